//! The sandbox's own tests: every rule of issue 3 driven over real HTTP with a plain client.

use std::collections::HashMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use url::Url;
use zylker_portal::sandbox::{
    self, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, RunningSandbox, SandboxClient, SandboxConfig,
};

mod control;
mod limits;

const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";
const ALL_SCOPES: &str =
    "ZohoCRM.modules.ALL,ZohoCRM.settings.ALL,ZohoCRM.users.READ,ZohoCRM.org.READ";
const PRIYA: &str = "priya.raman@zylker.com";
const ARJUN: &str = "arjun.mehta@zylker.com";
const SOFIA: &str = "sofia.khan@zylker.com";
const LIAM: &str = "liam.o'brien@zylker.com";

struct Sandbox {
    running: RunningSandbox,
    http: reqwest::Client,
    base: String,
}

struct Tokens {
    access: String,
    refresh: String,
}

fn config(control: bool) -> SandboxConfig {
    SandboxConfig {
        public_url: None,
        clients: vec![SandboxClient {
            client_id: DEMO_CLIENT_ID.to_owned(),
            client_secret: DEMO_CLIENT_SECRET.to_owned(),
            redirect_uris: vec![REDIRECT.to_owned(), "http://localhost:9/other".to_owned()],
        }],
        access_ttl: Duration::from_secs(3600),
        control,
        crm: Default::default(),
    }
}

impl Sandbox {
    async fn start() -> Self {
        Self::start_with(config(true)).await
    }

    async fn start_with(config: SandboxConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let running = sandbox::spawn(listener, config).expect("spawn the sandbox");
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .expect("an HTTP client");
        Sandbox {
            running,
            http,
            base,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth_params(scope: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut params = vec![
            ("client_id".to_owned(), DEMO_CLIENT_ID.to_owned()),
            ("response_type".to_owned(), "code".to_owned()),
            ("redirect_uri".to_owned(), REDIRECT.to_owned()),
            ("scope".to_owned(), scope.to_owned()),
        ];
        for (name, value) in extra {
            params.retain(|(key, _)| key != name);
            params.push(((*name).to_owned(), (*value).to_owned()));
        }
        params
    }

    async fn consent_page(&self, params: &[(String, String)]) -> (StatusCode, String) {
        let response = self
            .http
            .get(self.url("/oauth/v2/auth"))
            .query(params)
            .send()
            .await
            .expect("GET /oauth/v2/auth");
        let status = response.status();
        (status, response.text().await.expect("a body"))
    }

    /// Posts the consent form and returns the 302's Location.
    async fn decide(
        &self,
        email: &str,
        scope: &str,
        extra: &[(&str, &str)],
        decision: &str,
    ) -> Url {
        let mut form = Self::auth_params(scope, extra);
        form.push(("email".to_owned(), email.to_owned()));
        form.push(("decision".to_owned(), decision.to_owned()));
        let response = self
            .http
            .post(self.url("/oauth/v2/auth"))
            .form(&form)
            .send()
            .await
            .expect("POST /oauth/v2/auth");
        assert_eq!(response.status(), StatusCode::FOUND);
        let location = response.headers()["location"].to_str().expect("ASCII");
        Url::parse(location).expect("an absolute Location")
    }

    async fn code_for(&self, email: &str, scope: &str, extra: &[(&str, &str)]) -> String {
        let location = self.decide(email, scope, extra, "accept").await;
        query(&location)["code"].clone()
    }

    async fn token_call(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url("/oauth/v2/token"))
            .form(form)
            .send()
            .await
            .expect("POST /oauth/v2/token");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn exchange(&self, code: &str) -> Value {
        let (status, body) = self
            .token_call(&[
                ("grant_type", "authorization_code"),
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
                ("redirect_uri", REDIRECT),
                ("code", code),
            ])
            .await;
        assert_eq!(status, StatusCode::OK);
        body
    }

    /// A full offline login with `prompt=consent`: a fresh refresh token every time.
    async fn login_with(&self, email: &str, scope: &str) -> Tokens {
        let code = self
            .code_for(
                email,
                scope,
                &[("access_type", "offline"), ("prompt", "consent")],
            )
            .await;
        let body = self.exchange(&code).await;
        Tokens {
            access: body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            refresh: body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
        }
    }

    async fn login(&self, email: &str) -> Tokens {
        self.login_with(email, ALL_SCOPES).await
    }

    async fn refresh(&self, refresh_token: &str) -> Value {
        let (status, body) = self
            .token_call(&[
                ("grant_type", "refresh_token"),
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
                ("refresh_token", refresh_token),
            ])
            .await;
        assert_eq!(status, StatusCode::OK);
        body
    }

    async fn revoke(&self, token: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url("/oauth/v2/token/revoke"))
            .query(&[("token", token)])
            .send()
            .await
            .expect("POST revoke");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn crm(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/crm/v8/{path}")))
            .header("Authorization", format!("Zoho-oauthtoken {token}"))
            .send()
            .await
            .expect("GET /crm/v8")
    }

    async fn crm_json(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let response = self.crm(token, path).await;
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn create(&self, token: &str, module: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(&format!("/crm/v8/{module}")))
            .header("Authorization", format!("Zoho-oauthtoken {token}"))
            .json(&body)
            .send()
            .await
            .expect("POST /crm/v8");
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn control(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(&format!("/_sandbox/{path}")))
            .header(sandbox::CONTROL_HEADER, "1")
            .json(&body)
            .send()
            .await
            .expect("POST /_sandbox");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn counters(&self) -> Value {
        self.http
            .get(self.url("/_sandbox/counters"))
            .send()
            .await
            .expect("GET counters")
            .json()
            .await
            .expect("JSON counters")
    }
}

fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

fn assert_crm_error(status: StatusCode, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(body["details"].is_object(), "{body}");
}

// ---------------------------------------------------------------- consent page

#[tokio::test]
async fn consent_page_renders_personas_scopes_and_the_request_as_hidden_fields() {
    let sandbox = Sandbox::start().await;
    let params = Sandbox::auth_params(
        ALL_SCOPES,
        &[
            ("state", "st-123"),
            ("access_type", "offline"),
            ("code_challenge", "abc"),
            ("code_challenge_method", "S256"),
        ],
    );
    let (status, html) = sandbox.consent_page(&params).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"<form method="post" action="/oauth/v2/auth""#));
    assert!(html.contains("Zoho Accounts"));
    for (name, value) in [
        ("client_id", DEMO_CLIENT_ID),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", ALL_SCOPES),
        ("state", "st-123"),
        ("access_type", "offline"),
        ("code_challenge", "abc"),
        ("code_challenge_method", "S256"),
    ] {
        let input = format!(r#"<input type="hidden" name="{name}" value="{value}">"#);
        assert!(html.contains(&input), "missing {input}");
    }
    assert!(
        !html.contains(r#"name="prompt""#),
        "only given parameters are carried"
    );
    for email in [PRIYA, ARJUN, SOFIA] {
        assert!(html.contains(&format!(r#"name="email" value="{email}""#)));
    }
    // The apostrophe is escaped in the attribute; a browser submits it as written.
    assert!(html.contains(r#"name="email" value="liam.o&#39;brien@zylker.com""#));
    for scope in ALL_SCOPES.split(',') {
        assert!(
            html.contains(&format!("<code>{scope}</code>")),
            "scope {scope} listed"
        );
    }
    assert!(html.contains(r#"name="decision" value="accept""#));
    assert!(html.contains(r#"name="decision" value="deny""#));
    assert!(!html.contains("<script") && !html.contains("style=") && !html.contains("<style"));
}

#[tokio::test]
async fn consent_page_escapes_what_the_client_sent() {
    let sandbox = Sandbox::start().await;
    let params = Sandbox::auth_params(ALL_SCOPES, &[("state", r#""><script>alert(1)</script>"#)]);
    let (status, html) = sandbox.consent_page(&params).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(
        html.contains("&#34;&#62;&#60;script&#62;") || html.contains("&quot;&gt;&lt;script&gt;")
    );
}

#[tokio::test]
async fn consent_page_refuses_bad_requests_with_its_own_error_page_never_a_redirect() {
    let sandbox = Sandbox::start().await;
    let cases: Vec<(&str, Vec<(String, String)>)> = vec![
        (
            "unknown client",
            Sandbox::auth_params(ALL_SCOPES, &[("client_id", "1000.NOBODY")]),
        ),
        (
            "response_type token",
            Sandbox::auth_params(ALL_SCOPES, &[("response_type", "token")]),
        ),
        (
            "no scope",
            Sandbox::auth_params(ALL_SCOPES, &[])
                .into_iter()
                .filter(|(key, _)| key != "scope")
                .collect(),
        ),
        ("empty scope", Sandbox::auth_params("", &[])),
        (
            "unregistered redirect",
            Sandbox::auth_params(ALL_SCOPES, &[("redirect_uri", "https://evil.example/cb")]),
        ),
        (
            "redirect with a trailing slash",
            Sandbox::auth_params(
                ALL_SCOPES,
                &[("redirect_uri", "http://127.0.0.1:9/oauth/callback/")],
            ),
        ),
        (
            "redirect with an extra query",
            Sandbox::auth_params(
                ALL_SCOPES,
                &[("redirect_uri", "http://127.0.0.1:9/oauth/callback?x=1")],
            ),
        ),
    ];
    for (case, params) in cases {
        let response = sandbox
            .http
            .get(sandbox.url("/oauth/v2/auth"))
            .query(&params)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{case}");
        assert!(response.headers().get("location").is_none(), "{case}");
        let html = response.text().await.expect("body");
        assert!(html.contains("Zoho Accounts"), "{case}: the sandbox's page");
    }
}

#[tokio::test]
async fn accept_redirects_with_code_state_location_and_the_url_encoded_accounts_server() {
    let sandbox = Sandbox::start().await;
    let location = sandbox
        .decide(PRIYA, ALL_SCOPES, &[("state", "s t&8")], "accept")
        .await;
    assert_eq!(
        format!(
            "{}://{}{}",
            location.scheme(),
            location.authority(),
            location.path()
        ),
        REDIRECT
    );
    let raw = location.query().expect("a query");
    let encoded = url::form_urlencoded::byte_serialize(sandbox.base.as_bytes()).collect::<String>();
    assert!(raw.contains(&format!("accounts-server={encoded}")), "{raw}");
    let params = query(&location);
    assert!(params["code"].starts_with("1000."));
    assert_eq!(params["state"], "s t&8");
    assert_eq!(params["location"], "us");
    assert_eq!(params["accounts-server"], sandbox.base);
}

#[tokio::test]
async fn accept_without_state_sends_no_state() {
    let sandbox = Sandbox::start().await;
    let location = sandbox.decide(ARJUN, ALL_SCOPES, &[], "accept").await;
    let params = query(&location);
    assert!(params.contains_key("code"));
    assert!(!params.contains_key("state"));
}

#[tokio::test]
async fn deny_redirects_with_access_denied_and_state_and_no_code() {
    let sandbox = Sandbox::start().await;
    let location = sandbox
        .decide(PRIYA, ALL_SCOPES, &[("state", "st-9")], "deny")
        .await;
    let params = query(&location);
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "st-9");
    assert!(!params.contains_key("code"));
}

#[tokio::test]
async fn consent_post_revalidates_the_request_and_the_persona() {
    let sandbox = Sandbox::start().await;
    let post = |form: Vec<(String, String)>| {
        let request = sandbox.http.post(sandbox.url("/oauth/v2/auth")).form(&form);
        async move { request.send().await.expect("POST") }
    };
    let mut forged =
        Sandbox::auth_params(ALL_SCOPES, &[("redirect_uri", "https://evil.example/cb")]);
    forged.push(("email".into(), PRIYA.into()));
    forged.push(("decision".into(), "accept".into()));
    let response = post(forged).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get("location").is_none());

    let mut stranger = Sandbox::auth_params(ALL_SCOPES, &[]);
    stranger.push(("email".into(), "mallory@zylker.com".into()));
    stranger.push(("decision".into(), "accept".into()));
    assert_eq!(post(stranger).await.status(), StatusCode::BAD_REQUEST);

    let mut undecided = Sandbox::auth_params(ALL_SCOPES, &[]);
    undecided.push(("email".into(), PRIYA.into()));
    undecided.push(("decision".into(), "maybe".into()));
    assert_eq!(post(undecided).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn sandbox_serves_its_stylesheet() {
    let sandbox = Sandbox::start().await;
    let response = sandbox
        .http
        .get(sandbox.url("/static/sandbox.css"))
        .send()
        .await
        .expect("GET css");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/css")
    );
    assert!(response.text().await.expect("css").contains(".card"));
}

#[tokio::test]
async fn every_sandbox_answer_says_nosniff() {
    let sandbox = Sandbox::start().await;
    let auth_query = format!(
        "/oauth/v2/auth?client_id={DEMO_CLIENT_ID}&response_type=code&redirect_uri={REDIRECT}&scope={ALL_SCOPES}"
    );
    let requests = [
        ("GET", "/static/sandbox.css"),
        ("GET", auth_query.as_str()),
        ("GET", "/oauth/v2/auth"),
        ("POST", "/oauth/v2/token"),
        ("POST", "/oauth/v2/token/revoke"),
        ("GET", "/crm/v8/users"),
        ("GET", "/crm/v8/Leads"),
        ("GET", "/crm/v8/no/such/url/here"),
        ("GET", "/_sandbox/counters"),
        ("GET", "/no/such/page"),
        ("DELETE", "/oauth/v2/auth"),
    ];
    for (method, path) in requests {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let response = sandbox
            .http
            .request(method.clone(), sandbox.url(path))
            .send()
            .await
            .expect("the sandbox answers");
        let values: Vec<_> = response
            .headers()
            .get_all("x-content-type-options")
            .iter()
            .collect();
        assert_eq!(
            values,
            ["nosniff"],
            "{method} {path} ({})",
            response.status()
        );
    }
}

// ---------------------------------------------------------------- token endpoint

#[tokio::test]
async fn code_exchange_answers_zohos_body_with_a_refresh_token_for_offline_access() {
    let sandbox = Sandbox::start().await;
    let code = sandbox
        .code_for(PRIYA, ALL_SCOPES, &[("access_type", "offline")])
        .await;
    let body = sandbox.exchange(&code).await;
    let shape = regex_like_token;
    assert!(
        shape(body["access_token"].as_str().unwrap_or_default()),
        "{body}"
    );
    assert!(
        shape(body["refresh_token"].as_str().unwrap_or_default()),
        "{body}"
    );
    assert_eq!(body["api_domain"], sandbox.base.as_str());
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body.as_object().map(|body| body.len()), Some(5), "{body}");
}

/// `1000.<hex>.<hex>`, the shape of Zoho's tokens.
fn regex_like_token(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[0] == "1000"
        && parts[1..]
            .iter()
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_hexdigit()))
}

#[tokio::test]
async fn online_consent_gets_no_refresh_token() {
    let sandbox = Sandbox::start().await;
    let code = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    let body = sandbox.exchange(&code).await;
    assert!(body["access_token"].is_string());
    assert!(body.get("refresh_token").is_none(), "{body}");
}

#[tokio::test]
async fn a_second_offline_consent_gets_a_refresh_token_only_with_prompt_consent() {
    let sandbox = Sandbox::start().await;
    let first = sandbox
        .exchange(
            &sandbox
                .code_for(SOFIA, ALL_SCOPES, &[("access_type", "offline")])
                .await,
        )
        .await;
    assert!(first["refresh_token"].is_string());
    let second = sandbox
        .exchange(
            &sandbox
                .code_for(SOFIA, ALL_SCOPES, &[("access_type", "offline")])
                .await,
        )
        .await;
    assert!(second["access_token"].is_string());
    assert!(second.get("refresh_token").is_none(), "{second}");
    let forced = sandbox
        .exchange(
            &sandbox
                .code_for(
                    SOFIA,
                    ALL_SCOPES,
                    &[("access_type", "offline"), ("prompt", "consent")],
                )
                .await,
        )
        .await;
    assert!(forced["refresh_token"].is_string(), "{forced}");
    // Another person is a first consent of their own.
    let other = sandbox
        .exchange(
            &sandbox
                .code_for(ARJUN, ALL_SCOPES, &[("access_type", "offline")])
                .await,
        )
        .await;
    assert!(other["refresh_token"].is_string());
}

#[tokio::test]
async fn a_code_works_once() {
    let sandbox = Sandbox::start().await;
    let code = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    assert!(sandbox.exchange(&code).await["access_token"].is_string());
    assert_eq!(
        sandbox.exchange(&code).await,
        json!({"error": "invalid_code"})
    );
}

#[tokio::test]
async fn a_code_expires_after_two_minutes() {
    let sandbox = Sandbox::start().await;
    let fresh = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    let stale = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    sandbox.running.advance_clock(Duration::from_secs(110));
    assert!(sandbox.exchange(&fresh).await["access_token"].is_string());
    let (status, body) = sandbox
        .control("advance-clock", json!({"seconds": 11}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["offset_seconds"], 121);
    assert_eq!(
        sandbox.exchange(&stale).await,
        json!({"error": "invalid_code"})
    );
}

#[tokio::test]
async fn a_code_is_bound_to_its_redirect_uri() {
    let sandbox = Sandbox::start().await;
    let code = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    let (status, body) = sandbox
        .token_call(&[
            ("grant_type", "authorization_code"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("redirect_uri", "http://localhost:9/other"),
            ("code", &code),
        ])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"error": "invalid_redirect_uri"}));
}

#[tokio::test]
async fn a_code_is_bound_to_its_client() {
    let mut two_clients = config(true);
    two_clients.clients.push(SandboxClient {
        client_id: "1000.OTHER".into(),
        client_secret: "other-secret".into(),
        redirect_uris: vec![REDIRECT.into()],
    });
    let sandbox = Sandbox::start_with(two_clients).await;
    let code = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    let (_, body) = sandbox
        .token_call(&[
            ("grant_type", "authorization_code"),
            ("client_id", "1000.OTHER"),
            ("client_secret", "other-secret"),
            ("redirect_uri", REDIRECT),
            ("code", &code),
        ])
        .await;
    assert_eq!(body, json!({"error": "invalid_code"}));
}

#[tokio::test]
async fn token_errors_are_http_200_with_zohos_error_names() {
    let sandbox = Sandbox::start().await;
    let code = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "1000.NOBODY"),
                ("client_secret", "x"),
                ("redirect_uri", REDIRECT),
                ("code", &code),
            ],
            "invalid_client",
        ),
        (
            &[
                ("grant_type", "authorization_code"),
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", "wrong"),
                ("redirect_uri", REDIRECT),
                ("code", &code),
            ],
            "invalid_client_secret",
        ),
        (
            &[
                ("grant_type", "password"),
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
            ],
            "unsupported_grant_type",
        ),
        (
            &[
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
            ],
            "unsupported_grant_type",
        ),
        (
            &[
                ("grant_type", "authorization_code"),
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
                ("redirect_uri", REDIRECT),
                ("code", "1000.nope.nope"),
            ],
            "invalid_code",
        ),
        (
            &[
                ("grant_type", "refresh_token"),
                ("client_id", DEMO_CLIENT_ID),
                ("client_secret", DEMO_CLIENT_SECRET),
                ("refresh_token", "1000.unknown.token"),
            ],
            "invalid_code",
        ),
    ];
    for (form, error) in cases {
        let (status, body) = sandbox.token_call(form).await;
        assert_eq!(status, StatusCode::OK, "{error}");
        assert_eq!(body, json!({ "error": error }));
    }
    // The failed client checks did not burn the code.
    assert!(sandbox.exchange(&code).await["access_token"].is_string());
}

#[tokio::test]
async fn token_parameters_may_come_in_the_query_string() {
    let sandbox = Sandbox::start().await;
    let code = sandbox
        .code_for(PRIYA, ALL_SCOPES, &[("access_type", "offline")])
        .await;
    let response = sandbox
        .http
        .post(sandbox.url("/oauth/v2/token"))
        .query(&[
            ("grant_type", "authorization_code"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("redirect_uri", REDIRECT),
            ("code", &code),
        ])
        .send()
        .await
        .expect("POST");
    let body: Value = response.json().await.expect("JSON");
    let refresh = body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    // …or split between the query and the body.
    let response = sandbox
        .http
        .post(sandbox.url("/oauth/v2/token"))
        .query(&[
            ("grant_type", "refresh_token"),
            ("client_id", DEMO_CLIENT_ID),
        ])
        .form(&[
            ("client_secret", DEMO_CLIENT_SECRET),
            ("refresh_token", &refresh),
        ])
        .send()
        .await
        .expect("POST");
    let body: Value = response.json().await.expect("JSON");
    assert!(body["access_token"].is_string(), "{body}");
}

#[tokio::test]
async fn pkce_s256_and_plain_verifiers_are_checked() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let sandbox = Sandbox::start().await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier));
    let exchange = |code: String, verifier: Option<&'static str>| {
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", DEMO_CLIENT_ID.to_owned()),
            ("client_secret", DEMO_CLIENT_SECRET.to_owned()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code", code),
        ];
        if let Some(verifier) = verifier {
            form.push(("code_verifier", verifier.to_owned()));
        }
        let request = sandbox
            .http
            .post(sandbox.url("/oauth/v2/token"))
            .form(&form);
        async move {
            request
                .send()
                .await
                .expect("POST")
                .json::<Value>()
                .await
                .expect("JSON")
        }
    };
    let s256 = [
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let good = sandbox.code_for(PRIYA, ALL_SCOPES, &s256).await;
    assert!(exchange(good, Some(verifier)).await["access_token"].is_string());
    let wrong = sandbox.code_for(PRIYA, ALL_SCOPES, &s256).await;
    assert_eq!(
        exchange(wrong, Some("not-the-verifier")).await,
        json!({"error": "invalid_code"})
    );
    let missing = sandbox.code_for(PRIYA, ALL_SCOPES, &s256).await;
    assert_eq!(
        exchange(missing, None).await,
        json!({"error": "invalid_code"})
    );
    let plain = [
        ("code_challenge", "plain-verifier-value"),
        ("code_challenge_method", "plain"),
    ];
    let code = sandbox.code_for(PRIYA, ALL_SCOPES, &plain).await;
    assert!(exchange(code, Some("plain-verifier-value")).await["access_token"].is_string());
}

#[tokio::test]
async fn refresh_answers_a_new_access_token_and_no_refresh_token() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(PRIYA).await;
    let body = sandbox.refresh(&tokens.refresh).await;
    assert!(regex_like_token(
        body["access_token"].as_str().unwrap_or_default()
    ));
    assert_ne!(body["access_token"], tokens.access.as_str());
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(body["api_domain"], sandbox.base.as_str());
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let new_access = body["access_token"].as_str().unwrap_or_default();
    let (status, _) = sandbox.crm_json(new_access, "users?type=CurrentUser").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_eleventh_refresh_in_ten_minutes_is_access_denied_until_the_window_moves() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(PRIYA).await;
    for attempt in 1..=10 {
        let body = sandbox.refresh(&tokens.refresh).await;
        assert!(
            body["access_token"].is_string(),
            "refresh {attempt}: {body}"
        );
    }
    let throttled = sandbox.refresh(&tokens.refresh).await;
    assert_eq!(
        throttled,
        json!({
            "error_description": "You have made too many requests continuously. Please try again after some time.",
            "error": "Access Denied",
            "status": "failure",
        })
    );
    let counters = sandbox.running.counters();
    assert_eq!((counters.refreshes, counters.throttled_refreshes), (10, 1));
    sandbox.running.advance_clock(Duration::from_secs(601));
    assert!(sandbox.refresh(&tokens.refresh).await["access_token"].is_string());
}

#[tokio::test]
async fn a_sixteenth_live_access_token_ends_the_oldest() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(PRIYA).await; // access token 1
    let mut minted = vec![tokens.access.clone()];
    for round in 0..15 {
        if round == 9 {
            sandbox.running.advance_clock(Duration::from_secs(601));
        }
        let body = sandbox.refresh(&tokens.refresh).await;
        minted.push(body["access_token"].as_str().expect("access").to_owned());
    }
    assert_eq!(minted.len(), 16);
    let (status, body) = sandbox.crm_json(&minted[0], "users?type=CurrentUser").await;
    assert_crm_error(status, &body, 401, "INVALID_TOKEN");
    for token in &minted[1..] {
        let (status, _) = sandbox.crm_json(token, "users?type=CurrentUser").await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_twenty_first_refresh_token_revokes_the_oldest_and_its_access_tokens() {
    let sandbox = Sandbox::start().await;
    let mut logins = Vec::new();
    for _ in 0..21 {
        logins.push(sandbox.login(ARJUN).await);
    }
    let oldest = &logins[0];
    assert_eq!(
        sandbox.refresh(&oldest.refresh).await,
        json!({"error": "invalid_code"})
    );
    let (status, body) = sandbox
        .crm_json(&oldest.access, "users?type=CurrentUser")
        .await;
    assert_crm_error(status, &body, 401, "INVALID_TOKEN");
    assert!(sandbox.refresh(&logins[1].refresh).await["access_token"].is_string());
    assert!(sandbox.refresh(&logins[20].refresh).await["access_token"].is_string());
    // The limit is per user: another persona's token is untouched.
    let priya = sandbox.login(PRIYA).await;
    assert!(sandbox.refresh(&priya.refresh).await["access_token"].is_string());
    assert!(sandbox.refresh(&logins[1].refresh).await["access_token"].is_string());
}

#[tokio::test]
async fn an_access_token_expires_after_its_lifetime() {
    let sandbox = Sandbox::start_with(SandboxConfig {
        access_ttl: Duration::from_secs(90),
        ..config(true)
    })
    .await;
    let code = sandbox.code_for(PRIYA, ALL_SCOPES, &[]).await;
    let body = sandbox.exchange(&code).await;
    assert_eq!(body["expires_in"], 90);
    let token = body["access_token"].as_str().expect("access");
    assert_eq!(sandbox.crm(token, "org").await.status(), StatusCode::OK);
    sandbox.running.advance_clock(Duration::from_secs(91));
    let (status, body) = sandbox.crm_json(token, "org").await;
    assert_crm_error(status, &body, 401, "INVALID_TOKEN");
}

// ---------------------------------------------------------------- revocation

#[tokio::test]
async fn revoking_a_refresh_token_kills_its_access_tokens_and_a_second_revoke_is_400() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(PRIYA).await;
    let refreshed = sandbox.refresh(&tokens.refresh).await;
    let (status, body) = sandbox.revoke(&tokens.refresh).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "success"}));
    for access in [
        tokens.access.as_str(),
        refreshed["access_token"].as_str().unwrap_or_default(),
    ] {
        let (status, body) = sandbox.crm_json(access, "org").await;
        assert_crm_error(status, &body, 401, "INVALID_TOKEN");
    }
    assert_eq!(
        sandbox.refresh(&tokens.refresh).await,
        json!({"error": "invalid_code"})
    );
    assert_eq!(
        sandbox.revoke(&tokens.refresh).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        sandbox.revoke("1000.never.issued").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(sandbox.running.counters().revocations, 1);
}

#[tokio::test]
async fn revoke_takes_the_token_in_a_form_body_and_revokes_access_tokens_too() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(PRIYA).await;
    let response = sandbox
        .http
        .post(sandbox.url("/oauth/v2/token/revoke"))
        .form(&[("token", tokens.access.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::OK);
    let (status, body) = sandbox.crm_json(&tokens.access, "org").await;
    assert_crm_error(status, &body, 401, "INVALID_TOKEN");
    // The refresh token lives on.
    assert!(sandbox.refresh(&tokens.refresh).await["access_token"].is_string());
}

// ---------------------------------------------------------------- CRM: identity and authorization

#[tokio::test]
async fn current_user_and_org_describe_the_persona_and_zylker_academy() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(LIAM).await;
    let (status, body) = sandbox
        .crm_json(&tokens.access, "users?type=CurrentUser")
        .await;
    assert_eq!(status, StatusCode::OK);
    let user = &body["users"][0];
    assert_eq!(body["users"].as_array().map(Vec::len), Some(1));
    assert_eq!(user["email"], LIAM);
    assert_eq!(user["full_name"], "Liam O'Brien");
    assert_eq!(user["first_name"], "Liam");
    assert_eq!(user["last_name"], "O'Brien");
    assert_eq!(user["profile"]["name"], "Student");
    assert_eq!(user["role"]["name"], "Student");
    assert_eq!(user["status"], "active");
    for key in ["id", "zuid"] {
        assert!(
            user[key]
                .as_str()
                .is_some_and(|id| id.chars().all(|c| c.is_ascii_digit()))
        );
    }
    assert!(user["role"]["id"].is_string() && user["profile"]["id"].is_string());
    let (status, body) = sandbox.crm_json(&tokens.access, "org").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["org"][0]["id"], "60032191920");
    assert_eq!(body["org"][0]["company_name"], "Zylker Academy");

    let priya = sandbox.login(PRIYA).await;
    let (_, body) = sandbox
        .crm_json(&priya.access, "users?type=CurrentUser")
        .await;
    assert_eq!(body["users"][0]["profile"]["name"], "Administrator");
    assert_eq!(body["users"][0]["role"]["name"], "Course Coordinator");
}

#[tokio::test]
async fn crm_without_the_zoho_oauthtoken_scheme_is_authentication_failure() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(PRIYA).await;
    let bare = sandbox
        .http
        .get(sandbox.url("/crm/v8/org"))
        .send()
        .await
        .expect("GET");
    let status = bare.status();
    assert_crm_error(
        status,
        &bare.json().await.expect("JSON"),
        401,
        "AUTHENTICATION_FAILURE",
    );
    let bearer = sandbox
        .http
        .get(sandbox.url("/crm/v8/org"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .expect("GET");
    let status = bearer.status();
    assert_crm_error(
        status,
        &bearer.json().await.expect("JSON"),
        401,
        "AUTHENTICATION_FAILURE",
    );
    assert_eq!(sandbox.running.counters().unauthorized, 2);
}

#[tokio::test]
async fn crm_with_an_unknown_token_is_invalid_token() {
    let sandbox = Sandbox::start().await;
    let (status, body) = sandbox
        .crm_json("1000.not.mine", "Leads?fields=Last_Name")
        .await;
    assert_crm_error(status, &body, 401, "INVALID_TOKEN");
}

#[tokio::test]
async fn scopes_that_do_not_cover_the_call_are_oauth_scope_mismatch() {
    let sandbox = Sandbox::start().await;
    let narrow = sandbox
        .login_with(SOFIA, "zohocrm.modules.leads.read,ZohoCRM.users.READ")
        .await;
    let (status, _) = sandbox
        .crm_json(&narrow.access, "Leads?fields=Last_Name")
        .await;
    assert_eq!(status, StatusCode::OK, "module scope, any case");
    assert_eq!(
        sandbox
            .crm(&narrow.access, "users?type=CurrentUser")
            .await
            .status(),
        StatusCode::OK
    );
    for path in [
        "Contacts?fields=Last_Name",
        "org",
        "settings/modules",
        "settings/fields?module=Leads",
    ] {
        let (status, body) = sandbox.crm_json(&narrow.access, path).await;
        assert_crm_error(status, &body, 401, "OAUTH_SCOPE_MISMATCH");
    }
    let (status, body) = sandbox
        .create(
            &narrow.access,
            "Leads",
            json!({"data": [{"Last_Name": "Read Only"}]}),
        )
        .await;
    assert_crm_error(status, &body, 401, "OAUTH_SCOPE_MISMATCH");

    let settings = sandbox
        .login_with(
            PRIYA,
            "ZohoCRM.settings.modules.READ,ZohoCRM.settings.fields.ALL,ZohoCRM.org.ALL",
        )
        .await;
    assert_eq!(
        sandbox
            .crm(&settings.access, "settings/modules")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        sandbox
            .crm(&settings.access, "settings/fields?module=Leads")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        sandbox.crm(&settings.access, "org").await.status(),
        StatusCode::OK
    );
    let (status, body) = sandbox
        .crm_json(&settings.access, "users?type=CurrentUser")
        .await;
    assert_crm_error(status, &body, 401, "OAUTH_SCOPE_MISMATCH");
    let (status, body) = sandbox
        .crm_json(&settings.access, "Leads?fields=Last_Name")
        .await;
    assert_crm_error(status, &body, 401, "OAUTH_SCOPE_MISMATCH");
}

#[tokio::test]
async fn a_profile_without_the_module_gets_no_permission() {
    let sandbox = Sandbox::start().await;
    let liam = sandbox.login(LIAM).await;
    let (status, body) = sandbox
        .crm_json(&liam.access, "Leads?fields=Last_Name")
        .await;
    assert_crm_error(status, &body, 403, "NO_PERMISSION");
    assert!(
        body["details"]["permissions"]
            .as_array()
            .is_some_and(|list| !list.is_empty())
    );
    assert_eq!(
        sandbox
            .crm(&liam.access, "Courses?fields=Name")
            .await
            .status(),
        StatusCode::OK
    );

    let sofia = sandbox.login(SOFIA).await;
    for path in [
        "Contacts?fields=Last_Name",
        "Courses?fields=Name",
        "Deals?fields=Deal_Name",
    ] {
        let (status, body) = sandbox.crm_json(&sofia.access, path).await;
        assert_crm_error(status, &body, 403, "NO_PERMISSION");
    }
    let (status, body) = sandbox
        .crm_json(&sofia.access, "settings/fields?module=Contacts")
        .await;
    assert_crm_error(status, &body, 403, "NO_PERMISSION");

    let arjun = sandbox.login(ARJUN).await;
    for path in [
        "Leads?fields=Last_Name",
        "Contacts?fields=Last_Name",
        "Courses?fields=Name",
    ] {
        assert_eq!(
            sandbox.crm(&arjun.access, path).await.status(),
            StatusCode::OK,
            "{path}"
        );
    }
    let (status, body) = sandbox
        .crm_json(&arjun.access, "Deals?fields=Deal_Name")
        .await;
    assert_crm_error(status, &body, 403, "NO_PERMISSION");

    let priya = sandbox.login(PRIYA).await;
    for path in ["Leads", "Contacts", "Accounts", "Deals", "Courses"] {
        let (status, body) = sandbox
            .crm_json(&priya.access, &format!("{path}?fields=Owner"))
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

// ---------------------------------------------------------------- CRM: metadata

#[tokio::test]
async fn settings_modules_lists_what_the_profile_may_open_and_marks_api_less_modules() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (status, body) = sandbox.crm_json(&priya.access, "settings/modules").await;
    assert_eq!(status, StatusCode::OK);
    let modules = body["modules"].as_array().expect("modules");
    let api_names: Vec<&str> = modules
        .iter()
        .filter(|module| module["api_supported"] == true)
        .filter_map(|module| module["api_name"].as_str())
        .collect();
    assert_eq!(
        api_names,
        ["Leads", "Contacts", "Accounts", "Deals", "Courses"]
    );
    assert!(
        modules
            .iter()
            .any(|module| module["api_supported"] == false)
    );
    for module in modules {
        for key in [
            "api_name",
            "module_name",
            "singular_label",
            "plural_label",
            "id",
        ] {
            assert!(module[key].is_string(), "{key} in {module}");
        }
        assert!(module["creatable"].is_boolean() && module["api_supported"].is_boolean());
    }
    let courses = modules
        .iter()
        .find(|module| module["api_name"] == "Courses")
        .expect("Courses");
    assert_eq!(courses["generated_type"], "custom");

    let liam = sandbox.login(LIAM).await;
    let (_, body) = sandbox.crm_json(&liam.access, "settings/modules").await;
    let api_names: Vec<&str> = body["modules"]
        .as_array()
        .expect("modules")
        .iter()
        .filter(|module| module["api_supported"] == true)
        .filter_map(|module| module["api_name"].as_str())
        .collect();
    assert_eq!(api_names, ["Courses"]);
}

#[tokio::test]
async fn an_unknown_crm_url_is_invalid_url_pattern() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (status, body) = sandbox.crm_json(&priya.access, "Leads/1/2/3").await;
    assert_crm_error(status, &body, 404, "INVALID_URL_PATTERN");
}

#[tokio::test]
async fn settings_modules_describes_one_module_by_api_name() {
    let sandbox = Sandbox::start().await;
    let arjun = sandbox.login(ARJUN).await;
    let (status, body) = sandbox
        .crm_json(&arjun.access, "settings/modules/Contacts")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["modules"][0]["api_name"], "Contacts");
    assert_eq!(body["modules"][0]["plural_label"], "Contacts");
    let (status, body) = sandbox
        .crm_json(&arjun.access, "settings/modules/Deals")
        .await;
    assert_crm_error(status, &body, 403, "NO_PERMISSION");
    let (status, body) = sandbox
        .crm_json(&arjun.access, "settings/modules/Nope")
        .await;
    assert_crm_error(status, &body, 400, "INVALID_MODULE");
}

#[tokio::test]
async fn settings_fields_needs_a_valid_module() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (status, body) = sandbox.crm_json(&priya.access, "settings/fields").await;
    assert_crm_error(status, &body, 400, "REQUIRED_PARAM_MISSING");
    assert_eq!(body["details"]["param_name"], "module");
    for module in ["Nope", "Home"] {
        let (status, body) = sandbox
            .crm_json(&priya.access, &format!("settings/fields?module={module}"))
            .await;
        assert_crm_error(status, &body, 400, "INVALID_MODULE");
    }
    let (status, body) = sandbox
        .crm_json(&priya.access, "settings/fields?module=Leads")
        .await;
    assert_eq!(status, StatusCode::OK);
    let fields = body["fields"].as_array().expect("fields");
    let last_name = fields
        .iter()
        .find(|field| field["api_name"] == "Last_Name")
        .expect("Last_Name");
    assert_eq!(last_name["system_mandatory"], true);
    assert_eq!(last_name["data_type"], "text");
    let course = fields
        .iter()
        .find(|field| field["api_name"] == "Course_Interest")
        .expect("custom field");
    assert_eq!(course["custom_field"], true);
    assert!(
        course["pick_list_values"]
            .as_array()
            .is_some_and(|values| !values.is_empty())
    );
    for field in fields {
        for key in [
            "api_name",
            "field_label",
            "display_label",
            "data_type",
            "id",
            "json_type",
        ] {
            assert!(field[key].is_string(), "{key} in {field}");
        }
    }
}

// ---------------------------------------------------------------- CRM: records

#[tokio::test]
async fn listing_needs_fields_and_at_most_fifty_of_them() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (status, body) = sandbox.crm_json(&priya.access, "Leads").await;
    assert_crm_error(status, &body, 400, "REQUIRED_PARAM_MISSING");
    assert_eq!(body["details"]["param_name"], "fields");
    let (status, body) = sandbox.crm_json(&priya.access, "Leads?fields=").await;
    assert_crm_error(status, &body, 400, "REQUIRED_PARAM_MISSING");
    let fifty: Vec<String> = (0..50).map(|index| format!("F{index}")).collect();
    let (status, _) = sandbox
        .crm_json(&priya.access, &format!("Leads?fields={}", fifty.join(",")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let fifty_one: Vec<String> = (0..51).map(|index| format!("F{index}")).collect();
    let (status, body) = sandbox
        .crm_json(
            &priya.access,
            &format!("Leads?fields={}", fifty_one.join(",")),
        )
        .await;
    assert_crm_error(status, &body, 400, "LIMIT_EXCEEDED");
    let (status, body) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&per_page=201")
        .await;
    assert_crm_error(status, &body, 400, "INVALID_DATA");
    let (status, body) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&page=0")
        .await;
    assert_crm_error(status, &body, 400, "INVALID_DATA");
    for module in ["Nope", "Home", "settings"] {
        let (status, body) = sandbox
            .crm_json(&priya.access, &format!("{module}?fields=Last_Name"))
            .await;
        assert_crm_error(status, &body, 400, "INVALID_MODULE");
    }
}

#[tokio::test]
async fn leads_page_through_with_more_records_and_end_in_204() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (status, first) = sandbox
        .crm_json(&priya.access, "Leads?fields=First_Name,Last_Name,Email")
        .await;
    assert_eq!(status, StatusCode::OK);
    let total_first = first["data"].as_array().map(Vec::len).unwrap_or_default();
    assert_eq!(total_first, 200, "per_page defaults to 200");
    assert_eq!(first["info"]["per_page"], 200);
    assert_eq!(first["info"]["count"], 200);
    assert_eq!(first["info"]["page"], 1);
    assert_eq!(first["info"]["more_records"], true);
    assert_eq!(first["info"]["sort_by"], "id");
    assert_eq!(first["info"]["sort_order"], "desc");
    let record = first["data"][0].as_object().expect("a record");
    let mut keys: Vec<&str> = record.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["Email", "First_Name", "Last_Name", "id"]);

    let (status, second) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&page=2&per_page=200")
        .await;
    assert_eq!(status, StatusCode::OK);
    let rest = second["data"].as_array().map(Vec::len).unwrap_or_default();
    assert!(rest >= 50, "at least 250 leads in all");
    assert_eq!(second["info"]["count"], rest);
    assert_eq!(second["info"]["page"], 2);
    assert_eq!(second["info"]["more_records"], false);

    let past = sandbox
        .crm(&priya.access, "Leads?fields=Last_Name&page=3&per_page=200")
        .await;
    assert_eq!(past.status(), StatusCode::NO_CONTENT);
    assert!(past.bytes().await.expect("body").is_empty());

    let (_, page_one) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&per_page=20")
        .await;
    let (_, page_two) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&per_page=20&page=2")
        .await;
    assert_eq!(page_one["data"].as_array().map(Vec::len), Some(20));
    assert_eq!(page_two["info"]["more_records"], true);
    assert_eq!(page_two["data"][0]["id"], first["data"][20]["id"]);
    assert_ne!(page_one["data"][0]["id"], page_two["data"][0]["id"]);

    let (_, ascending) = sandbox
        .crm_json(
            &priya.access,
            "Leads?fields=Last_Name&per_page=1&sort_order=asc",
        )
        .await;
    assert_eq!(ascending["data"][0]["id"], second["data"][rest - 1]["id"]);
}

#[tokio::test]
async fn seeded_leads_are_zylker_academy_enquiries_and_the_same_every_start() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let fields = "First_Name,Last_Name,Full_Name,Email,Phone,City,Lead_Status,Lead_Source,Owner,Created_Time,Course_Interest";
    let mut leads = Vec::new();
    for page in 1..=2 {
        let (_, body) = sandbox
            .crm_json(&priya.access, &format!("Leads?fields={fields}&page={page}"))
            .await;
        leads.extend(body["data"].as_array().cloned().unwrap_or_default());
    }
    assert!(leads.len() >= 250, "{} leads", leads.len());
    let staff = ["Priya Raman", "Arjun Mehta", "Sofia Khan"];
    for lead in &leads {
        let id = lead["id"].as_str().expect("id");
        assert!(id.len() == 19 && id.starts_with("6003219192"), "{id}");
        assert!(
            lead["Created_Time"]
                .as_str()
                .is_some_and(|time| time.ends_with("+05:30"))
        );
        assert!(staff.contains(&lead["Owner"]["name"].as_str().unwrap_or_default()));
        assert!(lead["Owner"]["id"].is_string());
        for key in [
            "First_Name",
            "Last_Name",
            "Email",
            "Phone",
            "City",
            "Lead_Status",
            "Lead_Source",
            "Course_Interest",
        ] {
            assert!(lead[key].is_string(), "{key} in {lead}");
        }
    }
    let names: Vec<&str> = leads
        .iter()
        .filter_map(|lead| lead["Last_Name"].as_str())
        .collect();
    assert!(
        names.iter().any(|name| name.contains('\'')),
        "an apostrophe"
    );
    assert!(
        leads.iter().any(|lead| {
            lead["Full_Name"]
                .as_str()
                .is_some_and(|name| !name.is_ascii())
        }),
        "a non-ASCII name"
    );
    let courses: Vec<&str> = leads
        .iter()
        .filter_map(|lead| lead["Course_Interest"].as_str())
        .collect();
    assert!(
        courses.contains(&"Web Design Fundamentals") && courses.contains(&"Full-Stack JavaScript")
    );

    let again = Sandbox::start().await;
    let priya_again = again.login(PRIYA).await;
    let (_, first) = sandbox
        .crm_json(&priya.access, &format!("Leads?fields={fields}&per_page=30"))
        .await;
    let (_, second) = again
        .crm_json(
            &priya_again.access,
            &format!("Leads?fields={fields}&per_page=30"),
        )
        .await;
    assert_eq!(first["data"], second["data"]);
}

#[tokio::test]
async fn other_modules_hold_students_courses_and_corporate_batches() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (_, contacts) = sandbox
        .crm_json(
            &priya.access,
            "Contacts?fields=Full_Name,Course,Student_Status",
        )
        .await;
    assert!(
        contacts["data"]
            .as_array()
            .is_some_and(|data| data.len() >= 50)
    );
    assert!(contacts["data"][0]["Course"]["name"].is_string());
    let (_, courses) = sandbox
        .crm_json(&priya.access, "Courses?fields=Name,Fee")
        .await;
    let names: Vec<&str> = courses["data"]
        .as_array()
        .expect("courses")
        .iter()
        .filter_map(|c| c["Name"].as_str())
        .collect();
    assert!(names.contains(&"UI/UX Design") && names.contains(&"DevOps Essentials"));
    let (_, deals) = sandbox
        .crm_json(
            &priya.access,
            "Deals?fields=Deal_Name,Stage,Amount,Account_Name",
        )
        .await;
    assert!(
        deals["data"][0]["Deal_Name"]
            .as_str()
            .is_some_and(|name| name.contains("batch"))
    );
    assert!(deals["data"][0]["Account_Name"]["name"].is_string());
}

#[tokio::test]
async fn a_record_by_id_and_an_unknown_id() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (_, list) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&per_page=1")
        .await;
    let id = list["data"][0]["id"].as_str().expect("id").to_owned();
    let (status, body) = sandbox
        .crm_json(&priya.access, &format!("Leads/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let record = &body["data"][0];
    assert_eq!(record["id"], id.as_str());
    assert_eq!(record["Last_Name"], list["data"][0]["Last_Name"]);
    assert!(record["Email"].is_string() && record["Owner"]["name"].is_string());
    for unknown in ["6003219192000000000001", "not-a-number"] {
        let (status, body) = sandbox
            .crm_json(&priya.access, &format!("Leads/{unknown}"))
            .await;
        assert_crm_error(status, &body, 400, "INVALID_DATA");
        assert_eq!(body["message"], "the id given seems to be invalid");
    }
    let liam = sandbox.login(LIAM).await;
    let (status, body) = sandbox.crm_json(&liam.access, &format!("Leads/{id}")).await;
    assert_crm_error(status, &body, 403, "NO_PERMISSION");
}

#[tokio::test]
async fn creating_a_lead_answers_per_record_and_the_lead_is_listed_first() {
    let sandbox = Sandbox::start().await;
    let sofia = sandbox.login(SOFIA).await;
    let (status, body) = sandbox
        .create(
            &sofia.access,
            "Leads",
            json!({"data": [{
                "First_Name": "Zoë",
                "Last_Name": "<script>alert(1)</script>",
                "Email": "zoe@example.com",
                "Course_Interest": "UI/UX Design",
                "Unknown_Field": 1,
            }]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let answer = &body["data"][0];
    assert_eq!(answer["code"], "SUCCESS");
    assert_eq!(answer["status"], "success");
    assert_eq!(answer["message"], "record added");
    let id = answer["details"]["id"].as_str().expect("id").to_owned();
    assert!(id.len() == 19 && id.starts_with("6003219192"));
    assert_eq!(answer["details"]["Created_By"]["name"], "Sofia Khan");
    assert!(
        answer["details"]["Created_Time"]
            .as_str()
            .is_some_and(|time| time.ends_with("+05:30"))
    );
    assert!(answer["details"]["Modified_Time"].is_string());

    let (_, list) = sandbox
        .crm_json(&sofia.access, "Leads?fields=Last_Name,Owner&per_page=1")
        .await;
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert_eq!(list["data"][0]["Last_Name"], "<script>alert(1)</script>");
    assert_eq!(list["data"][0]["Owner"]["name"], "Sofia Khan");
    let (_, record) = sandbox
        .crm_json(&sofia.access, &format!("Leads/{id}"))
        .await;
    assert_eq!(
        record["data"][0]["Full_Name"],
        "Zoë <script>alert(1)</script>"
    );
    assert!(record["data"][0].get("Unknown_Field").is_none());
    // Another token of another user sees it too: records live as long as the sandbox.
    let priya = sandbox.login(PRIYA).await;
    let (status, _) = sandbox
        .crm_json(&priya.access, &format!("Leads/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_lead_without_last_name_is_mandatory_not_found_and_mixed_batches_are_207() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (_, before) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&per_page=1")
        .await;
    let (status, body) = sandbox
        .create(
            &priya.access,
            "Leads",
            json!({"data": [{"First_Name": "Nameless", "Last_Name": "  "}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["data"][0],
        json!({"code": "MANDATORY_NOT_FOUND", "details": {"api_name": "Last_Name"}, "message": "required field not found", "status": "error"})
    );
    let (_, after) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name&per_page=1")
        .await;
    assert_eq!(
        before["data"][0]["id"], after["data"][0]["id"],
        "nothing stored"
    );

    let (status, body) = sandbox
        .create(
            &priya.access,
            "Leads",
            json!({"data": [
                {"Last_Name": "D'Souza"},
                {"First_Name": "No"},
                {"Last_Name": "Bad", "Email": "not an email"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::MULTI_STATUS);
    assert_eq!(body["data"][0]["code"], "SUCCESS");
    assert_eq!(body["data"][1]["code"], "MANDATORY_NOT_FOUND");
    assert_eq!(body["data"][2]["code"], "INVALID_DATA");
    assert_eq!(body["data"][2]["details"]["api_name"], "Email");

    let (status, body) = sandbox
        .create(&priya.access, "Leads", json!({"nope": []}))
        .await;
    assert_crm_error(status, &body, 400, "REQUIRED_PARAM_MISSING");
    let liam = sandbox.login(LIAM).await;
    let (status, body) = sandbox
        .create(
            &liam.access,
            "Leads",
            json!({"data": [{"Last_Name": "Sneaky"}]}),
        )
        .await;
    assert_crm_error(status, &body, 403, "NO_PERMISSION");
}

// ---------------------------------------------------------------- control surface

#[tokio::test]
async fn counters_count_exchanges_refreshes_revocations_crm_calls_and_401s() {
    let sandbox = Sandbox::start().await;
    assert_eq!(
        sandbox.counters().await,
        json!({"code_exchanges":0,"refreshes":0,"throttled_refreshes":0,"revocations":0,"crm_calls":0,"unauthorized":0,"crm_429":0,"max_concurrent_crm":0,"credits_used":0})
    );
    let tokens = sandbox.login(PRIYA).await;
    sandbox.refresh(&tokens.refresh).await;
    sandbox.crm(&tokens.access, "org").await;
    sandbox.crm("1000.bad.token", "org").await;
    sandbox.revoke(&tokens.refresh).await;
    assert_eq!(
        sandbox.counters().await,
        json!({"code_exchanges":1,"refreshes":1,"throttled_refreshes":0,"revocations":1,"crm_calls":2,"unauthorized":1,"crm_429":0,"max_concurrent_crm":1,"credits_used":2})
    );
    let (status, body) = sandbox.control("reset", json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"ok": true})));
    assert_eq!(sandbox.running.counters(), Default::default());
}

#[tokio::test]
async fn expire_access_tokens_makes_every_live_token_invalid() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let arjun = sandbox.login(ARJUN).await;
    let (status, body) = sandbox.control("expire-access-tokens", json!({})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"expired": 2})));
    for token in [&priya.access, &arjun.access] {
        let (status, body) = sandbox.crm_json(token, "org").await;
        assert_crm_error(status, &body, 401, "INVALID_TOKEN");
    }
    let fresh = sandbox.refresh(&priya.refresh).await;
    let (status, _) = sandbox
        .crm_json(fresh["access_token"].as_str().unwrap_or_default(), "org")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sandbox.control("expire-access-tokens", json!({})).await.1,
        json!({"expired": 1})
    );
}

#[tokio::test]
async fn revoke_refresh_tokens_ends_every_session() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let arjun = sandbox.login(ARJUN).await;
    assert_eq!(
        sandbox.control("revoke-refresh-tokens", json!({})).await.1,
        json!({"revoked": 2})
    );
    for tokens in [&priya, &arjun] {
        assert_eq!(
            sandbox.refresh(&tokens.refresh).await,
            json!({"error": "invalid_code"})
        );
        let (status, body) = sandbox.crm_json(&tokens.access, "org").await;
        assert_crm_error(status, &body, 401, "INVALID_TOKEN");
    }
}

#[tokio::test]
async fn injected_crm_failures_answer_zohos_envelopes_for_the_next_n_calls() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    let (status, body) = sandbox
        .control(
            "inject",
            json!({"target": "crm", "status": 500, "count": 2}),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"ok": true})));
    sandbox
        .control(
            "inject",
            json!({"target": "crm", "status": 429, "count": 1}),
        )
        .await;
    for _ in 0..2 {
        let (status, body) = sandbox.crm_json(&priya.access, "org").await;
        assert_crm_error(status, &body, 500, "INTERNAL_ERROR");
    }
    let (status, body) = sandbox
        .crm_json(&priya.access, "Leads?fields=Last_Name")
        .await;
    assert_crm_error(status, &body, 429, "TOO_MANY_REQUESTS");
    assert_eq!(
        sandbox.crm(&priya.access, "org").await.status(),
        StatusCode::OK
    );
    assert_eq!(sandbox.running.counters().crm_calls, 4);
}

#[tokio::test]
async fn an_injected_crm_delay_holds_the_answer_back() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    sandbox
        .control(
            "inject",
            json!({"target": "crm", "delay_ms": 300, "count": 1}),
        )
        .await;
    let started = Instant::now();
    assert_eq!(
        sandbox.crm(&priya.access, "org").await.status(),
        StatusCode::OK
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the delay is a lower bound"
    );
}

#[tokio::test]
async fn injected_token_errors_answer_http_200_and_access_denied_counts_as_throttled() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    sandbox
        .control(
            "inject",
            json!({"target": "token", "error": "Access Denied", "count": 1}),
        )
        .await;
    sandbox
        .control(
            "inject",
            json!({"target": "token", "error": "invalid_client", "count": 1}),
        )
        .await;
    let throttled = sandbox.refresh(&priya.refresh).await;
    assert_eq!(throttled["error"], "Access Denied");
    assert_eq!(throttled["status"], "failure");
    assert_eq!(
        sandbox.refresh(&priya.refresh).await,
        json!({"error": "invalid_client"})
    );
    assert!(sandbox.refresh(&priya.refresh).await["access_token"].is_string());
    let counters = sandbox.running.counters();
    assert_eq!((counters.throttled_refreshes, counters.refreshes), (1, 1));
}

#[tokio::test]
async fn an_injected_api_domain_rides_on_the_next_successful_token_answers() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    sandbox
        .control(
            "inject",
            json!({"target": "token", "api_domain": "https://evil.example", "count": 2}),
        )
        .await;
    assert_eq!(
        sandbox.refresh("1000.unknown.x").await,
        json!({"error": "invalid_code"})
    );
    assert_eq!(
        sandbox.refresh(&priya.refresh).await["api_domain"],
        "https://evil.example"
    );
    let code = sandbox.code_for(ARJUN, ALL_SCOPES, &[]).await;
    assert_eq!(
        sandbox.exchange(&code).await["api_domain"],
        "https://evil.example"
    );
    assert_eq!(
        sandbox.refresh(&priya.refresh).await["api_domain"],
        sandbox.base.as_str()
    );
}

#[tokio::test]
async fn an_injected_token_delay_still_answers() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    sandbox
        .control("inject", json!({"target": "token", "delay_ms": 200}))
        .await;
    let started = Instant::now();
    assert!(sandbox.refresh(&priya.refresh).await["access_token"].is_string());
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn reset_clears_pending_injections() {
    let sandbox = Sandbox::start().await;
    let priya = sandbox.login(PRIYA).await;
    sandbox
        .control(
            "inject",
            json!({"target": "crm", "status": 500, "count": 5}),
        )
        .await;
    sandbox.control("reset", json!({})).await;
    assert_eq!(
        sandbox.crm(&priya.access, "org").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn malformed_injections_are_refused() {
    let sandbox = Sandbox::start().await;
    for body in [
        json!({"target": "mail", "status": 500}),
        json!({"target": "crm"}),
        json!({"target": "crm", "status": 200}),
        json!({"target": "crm", "status": 500, "count": 0}),
        json!({"target": "token", "status": 500}),
        json!({"target": "crm", "status": 500, "colour": "red"}),
    ] {
        let (status, reply) = sandbox.control("inject", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply["ok"], false);
    }
}

#[tokio::test]
async fn the_control_surface_is_404_when_off() {
    let sandbox = Sandbox::start_with(config(false)).await;
    for path in [
        "expire-access-tokens",
        "revoke-refresh-tokens",
        "inject",
        "reset",
        "advance-clock",
    ] {
        let (status, _) = sandbox.control(path, json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let response = sandbox
        .http
        .get(sandbox.url("/_sandbox/counters"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // The sandbox itself still works.
    let tokens = sandbox.login(PRIYA).await;
    assert_eq!(
        sandbox.crm(&tokens.access, "org").await.status(),
        StatusCode::OK
    );
}

// ---------------------------------------------------------------- lifecycle

#[actix_web::test]
async fn spawn_serves_inside_an_actix_runtime_and_stop_ends_it() {
    let sandbox = Sandbox::start().await;
    let tokens = sandbox.login(PRIYA).await;
    assert_eq!(
        sandbox.crm(&tokens.access, "org").await.status(),
        StatusCode::OK
    );
    let url = sandbox.url("/static/sandbox.css");
    let http = sandbox.http.clone();
    sandbox.running.stop().await;
    assert!(
        http.get(url).send().await.is_err(),
        "nothing listens after stop"
    );
}

#[tokio::test]
async fn the_public_url_is_what_the_sandbox_calls_itself() {
    let public = Url::parse("http://localhost:9999").expect("URL");
    let sandbox = Sandbox::start_with(SandboxConfig {
        public_url: Some(public),
        ..config(true)
    })
    .await;
    assert_eq!(sandbox.running.url().as_str(), "http://localhost:9999/");
    let location = sandbox.decide(PRIYA, ALL_SCOPES, &[], "accept").await;
    let params = query(&location);
    assert_eq!(params["accounts-server"], "http://localhost:9999");
    assert_eq!(
        sandbox.exchange(&params["code"]).await["api_domain"],
        "http://localhost:9999"
    );
}
