//! Test support: a sandbox on a random port with its control surface, and a plain HTTP client walking its
//! consent form, token endpoint and CRM v8 API.

use std::collections::HashMap;
use std::net::TcpListener;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::Value;
use url::Url;
use zylker_portal::sandbox::{
    self, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, RunningSandbox, SandboxClient, SandboxConfig,
};

pub const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";
pub const ALL_SCOPES: &str =
    "ZohoCRM.modules.ALL,ZohoCRM.settings.ALL,ZohoCRM.users.READ,ZohoCRM.org.READ";
pub const PRIYA: &str = "priya.raman@zylker.com";
pub const ARJUN: &str = "arjun.mehta@zylker.com";
pub const SOFIA: &str = "sofia.khan@zylker.com";
pub const LIAM: &str = "liam.o'brien@zylker.com";

pub struct Sandbox {
    pub running: RunningSandbox,
    pub http: reqwest::Client,
    pub base: String,
}

pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

pub fn config(control: bool) -> SandboxConfig {
    SandboxConfig {
        public_url: None,
        clients: vec![SandboxClient {
            client_id: DEMO_CLIENT_ID.to_owned(),
            client_secret: DEMO_CLIENT_SECRET.into(),
            redirect_uris: vec![REDIRECT.to_owned(), "http://localhost:9/other".to_owned()],
        }],
        access_ttl: Duration::from_secs(3600),
        control,
        crm: Default::default(),
        state_file: None,
    }
}

impl Sandbox {
    pub async fn start() -> Self {
        Self::start_with(config(true)).await
    }

    pub async fn start_with(config: SandboxConfig) -> Self {
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn auth_params(scope: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
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

    pub async fn consent_page(&self, params: &[(String, String)]) -> (StatusCode, String) {
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
    pub async fn decide(
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

    pub async fn code_for(&self, email: &str, scope: &str, extra: &[(&str, &str)]) -> String {
        let location = self.decide(email, scope, extra, "accept").await;
        query(&location)["code"].clone()
    }

    pub async fn token_call(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
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

    pub async fn exchange(&self, code: &str) -> Value {
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
    pub async fn login_with(&self, email: &str, scope: &str) -> Tokens {
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

    pub async fn login(&self, email: &str) -> Tokens {
        self.login_with(email, ALL_SCOPES).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Value {
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

    pub async fn revoke(&self, token: &str) -> (StatusCode, Value) {
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

    pub async fn crm(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/crm/v8/{path}")))
            .header("Authorization", format!("Zoho-oauthtoken {token}"))
            .send()
            .await
            .expect("GET /crm/v8")
    }

    pub async fn crm_json(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let response = self.crm(token, path).await;
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    pub async fn create(&self, token: &str, module: &str, body: Value) -> (StatusCode, Value) {
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

    pub async fn control(&self, path: &str, body: Value) -> (StatusCode, Value) {
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

    pub async fn counters(&self) -> Value {
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

pub fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

pub fn assert_crm_error(status: StatusCode, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(body["details"].is_object(), "{body}");
}
