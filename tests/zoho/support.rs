//! Test support: a real sandbox on a random port, a token manager pointed at it, and a plain-HTTP walk through
//! the sandbox's consent form to obtain authorization codes.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use url::Url;
use zylker_portal::sandbox::{self, RunningSandbox, SandboxClient, SandboxConfig};
pub use zylker_portal::secret::Secret;
use zylker_portal::tokens::manager::{Login, LoginOutcome, TokenError};
use zylker_portal::tokens::{ListStore, OAuthToken, TokenManager, TokenStore};
use zylker_portal::zoho::{AccountsClient, ClientCredentials, CrmClient, ZohoHosts};

pub const CLIENT_ID: &str = "1000.ZOHOHELPERTESTS";
pub const CLIENT_SECRET: &str = "zoho-helper-test-secret";
/// Registered at the sandbox and never contacted: codes are read from the consent form's `Location`.
pub const REDIRECT_URL: &str = "http://127.0.0.1:9/oauth/callback";
pub const ORG_ID: &str = "60032191920";
pub const PRIYA: &str = "priya.raman@zylker.com";
pub const ARJUN: &str = "arjun.mehta@zylker.com";
pub const SOFIA: &str = "sofia.khan@zylker.com";
pub const LIAM: &str = "liam.o'brien@zylker.com";
pub const SCOPE: &str = "ZohoCRM.modules.ALL,ZohoCRM.settings.modules.READ,ZohoCRM.settings.fields.READ,ZohoCRM.users.READ,ZohoCRM.org.READ";
pub const LEEWAY: Duration = Duration::from_secs(60);

/// A sandbox with its control surface on, and a token manager on a store, both for one test.
pub struct TestZoho {
    /// Held for the test's lifetime so the sandbox keeps serving.
    _sandbox: RunningSandbox,
    pub url: Url,
    pub store: Arc<dyn TokenStore>,
    pub manager: Arc<TokenManager>,
    pub http: reqwest::Client,
}

/// What the consent form's redirect carried.
pub struct Callback {
    pub code: Secret,
    pub accounts_server: String,
    pub verifier: Secret,
}

/// Which authorization request to make.
#[derive(Clone, Copy, Default)]
pub struct AuthRequest<'a> {
    /// Leave `access_type=offline` out (Zoho then issues no refresh token).
    pub online: bool,
    pub prompt_consent: bool,
    /// Scopes other than [`SCOPE`].
    pub scope: Option<&'a str>,
}

impl TestZoho {
    pub async fn start() -> TestZoho {
        Self::start_with_store(Arc::new(ListStore::new())).await
    }

    pub async fn start_with_store(store: Arc<dyn TokenStore>) -> TestZoho {
        Self::start_with(store, Duration::from_secs(3600)).await
    }

    /// A sandbox whose access tokens live `access_ttl`.
    pub async fn start_with(store: Arc<dyn TokenStore>, access_ttl: Duration) -> TestZoho {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a port for the sandbox");
        let sandbox = sandbox::spawn(
            listener,
            SandboxConfig {
                public_url: None,
                clients: vec![SandboxClient {
                    client_id: CLIENT_ID.to_owned(),
                    client_secret: Secret::from(CLIENT_SECRET),
                    redirect_uris: vec![REDIRECT_URL.to_owned()],
                }],
                access_ttl,
                control: true,
                crm: Default::default(),
                state_file: None,
            },
        )
        .expect("start the sandbox");
        let url = sandbox.url().clone();
        let manager = Arc::new(manager_for(&url, Arc::clone(&store), CLIENT_SECRET));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a test HTTP client");
        TestZoho {
            _sandbox: sandbox,
            url,
            store,
            manager,
            http,
        }
    }

    /// Walks the consent form as `email` and accepts; returns what the redirect to the portal carried.
    pub async fn authorize(&self, email: &str, request: AuthRequest<'_>) -> Callback {
        let (verifier, challenge) = zylker_portal::zoho::accounts::new_pkce_pair();
        let state = Secret::random();
        let mut auth_url = self.manager.authorization_url(
            &self.url,
            request.scope.unwrap_or(SCOPE),
            &state,
            &challenge,
            request.prompt_consent,
        );
        if request.online {
            let kept: Vec<(String, String)> = auth_url
                .query_pairs()
                .filter(|(name, _)| name != "access_type")
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            auth_url.query_pairs_mut().clear().extend_pairs(kept);
        }
        let page = self
            .http
            .get(auth_url.clone())
            .send()
            .await
            .expect("GET the consent page");
        assert_eq!(page.status(), 200, "the consent page renders");

        let mut form: Vec<(String, String)> = auth_url
            .query_pairs()
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        form.push(("email".to_owned(), email.to_owned()));
        form.push(("decision".to_owned(), "accept".to_owned()));
        let mut post_url = self.url.clone();
        post_url.set_path("/oauth/v2/auth");
        let answer = self
            .http
            .post(post_url)
            .form(&form)
            .send()
            .await
            .expect("POST the consent form");
        assert_eq!(answer.status(), 302, "accepting redirects to the portal");
        let location = answer
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .expect("a Location header");
        let location = Url::parse(location).expect("an absolute redirect");
        assert!(location.as_str().starts_with(REDIRECT_URL));
        let param = |name: &str| {
            location
                .query_pairs()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| panic!("the redirect carries {name}"))
        };
        assert_eq!(param("state"), state.expose_secret());
        Callback {
            code: Secret::from(param("code")),
            accounts_server: param("accounts-server"),
            verifier,
        }
    }

    /// The callback's work: validate `accounts-server`, then log in through the manager.
    pub async fn login_outcome(
        &self,
        email: &str,
        request: AuthRequest<'_>,
    ) -> Result<LoginOutcome, TokenError> {
        let callback = self.authorize(email, request).await;
        let accounts = self
            .manager
            .accounts_server(&callback.accounts_server)
            .expect("the sandbox's accounts-server is allowed");
        self.manager
            .login(&accounts, &callback.code, &callback.verifier)
            .await
    }

    /// A full login with `access_type=offline` that must succeed.
    pub async fn login(&self, email: &str) -> Login {
        match self.login_outcome(email, AuthRequest::default()).await {
            Ok(LoginOutcome::LoggedIn(login)) => *login,
            Ok(LoginOutcome::NeedsConsent) => panic!("login of {email} asked for consent"),
            Err(error) => panic!("login of {email} failed: {error}"),
        }
    }

    pub fn stored(&self, token_id: &str) -> Option<OAuthToken> {
        self.store
            .find_token_by_id(token_id)
            .expect("read the store")
    }

    pub fn rows(&self) -> Vec<OAuthToken> {
        self.store.get_tokens().expect("read the store")
    }

    /// Moves the stored access token's expiry into the past, as if an hour had gone by.
    pub fn expire_in_store(&self, token_id: &str) {
        let mut token = self.stored(token_id).expect("the token is stored");
        token.expiry_time = Some(zylker_portal::tokens::now_millis() - 1_000);
        self.store.save_token(&mut token).expect("write the store");
    }

    pub async fn counters(&self) -> Value {
        self.control_get("/_sandbox/counters").await
    }

    pub async fn counter(&self, name: &str) -> u64 {
        self.counters()
            .await
            .get(name)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("the sandbox counts {name}"))
    }

    pub async fn control(&self, path: &str, body: Value) -> Value {
        let mut url = self.url.clone();
        url.set_path(path);
        let answer = self
            .http
            .post(url)
            .header(sandbox::CONTROL_HEADER, "1")
            .json(&body)
            .send()
            .await
            .expect("reach the control surface");
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        answer.json().await.expect("JSON from the control surface")
    }

    async fn control_get(&self, path: &str) -> Value {
        let mut url = self.url.clone();
        url.set_path(path);
        let answer = self
            .http
            .get(url)
            .send()
            .await
            .expect("reach the control surface");
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        answer.json().await.expect("JSON from the control surface")
    }

    pub async fn inject(&self, injection: Value) {
        let answer = self.control("/_sandbox/inject", injection).await;
        assert_eq!(answer["ok"], true);
    }

    /// A second token manager on the same store: another portal process sharing the database.
    pub fn second_manager(&self) -> TokenManager {
        manager_for(&self.url, Arc::clone(&self.store), CLIENT_SECRET)
    }

    /// A manager of this sandbox whose client secret is wrong.
    pub fn manager_with_secret(&self, secret: &str) -> TokenManager {
        manager_for(&self.url, Arc::clone(&self.store), secret)
    }
}

/// A CRM client as the managers' (CRM clients keep no state but their connections: any one will do).
pub fn crm_client() -> CrmClient {
    CrmClient::new(Duration::from_secs(10)).expect("a CRM client")
}

/// The test client's Accounts client, for calls a test makes at Zoho itself (a refresh, a revoke).
pub fn accounts_client() -> AccountsClient {
    let credentials = ClientCredentials {
        client_id: CLIENT_ID.to_owned(),
        client_secret: Secret::from(CLIENT_SECRET),
        redirect_url: Url::parse(REDIRECT_URL).expect("the redirect URL parses"),
    };
    AccountsClient::new(credentials, Duration::from_secs(10)).expect("an accounts client")
}

pub fn manager_for(accounts: &Url, store: Arc<dyn TokenStore>, secret: &str) -> TokenManager {
    manager_with_timeout(accounts, store, secret, Duration::from_secs(10))
}

pub fn manager_with_timeout(
    accounts: &Url,
    store: Arc<dyn TokenStore>,
    secret: &str,
    timeout: Duration,
) -> TokenManager {
    let credentials = ClientCredentials {
        client_id: CLIENT_ID.to_owned(),
        client_secret: Secret::from(secret),
        redirect_url: Url::parse(REDIRECT_URL).expect("the redirect URL parses"),
    };
    TokenManager::new(
        store,
        AccountsClient::new(credentials, timeout).expect("an accounts client"),
        CrmClient::new(timeout).expect("a CRM client"),
        ZohoHosts::new(accounts.clone()),
        LEEWAY,
    )
    // These tests write the store behind the manager's back between two calls, as another process would, and
    // check what the next call makes of it: the manager reads the store on every call (the portal trusts a read
    // for `TRUSTED_READ`; `reads_are_trusted_for_the_window_and_no_longer` tests that).
    .trusting_reads_for(Duration::ZERO)
}
