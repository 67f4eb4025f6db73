//! The Zoho Accounts client: authorization URL, code exchange, refresh and revoke, Zoho's quirks included.

use std::time::Duration;

use url::Url;

/// The OAuth client registered in Zoho's API console. `Debug` never prints the secret.
#[derive(Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: String,
    /// `{public-url}/oauth/callback`, exactly as registered.
    pub redirect_url: Url,
}

/// A successful answer of the token endpoint. `Debug` never prints the tokens.
#[derive(Clone)]
pub struct TokenGrant {
    pub access_token: String,
    /// Present after a code exchange with `access_type=offline` on first consent; never after a refresh.
    pub refresh_token: Option<String>,
    pub api_domain: Option<String>,
    pub expires_in: Duration,
}

/// How a call to Zoho Accounts failed, classified by what the portal must do about it.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// `invalid_code`: the code or the refresh token is dead (used, expired, revoked). Log in again.
    #[error("Zoho says the code or refresh token is no longer valid")]
    Dead,
    /// `Access Denied`: too many requests; keep the token and try later.
    #[error("Zoho is throttling token requests")]
    Throttled,
    /// `invalid_client`, `invalid_client_secret`, `invalid_redirect_uri`: the portal is misconfigured.
    #[error("Zoho rejected the portal's client configuration ({0})")]
    Misconfigured(String),
    /// Any other `error` value.
    #[error("Zoho refused the request ({0})")]
    Rejected(String),
    #[error("Zoho Accounts did not answer in time")]
    Timeout,
    #[error("Zoho Accounts could not be reached")]
    Unreachable(#[source] reqwest::Error),
    /// An answer that is neither a token nor an error.
    #[error("unexpected answer from Zoho Accounts: {0}")]
    Protocol(String),
}

/// Talks to Zoho Accounts for one registered client.
#[derive(Clone)]
pub struct AccountsClient {
    credentials: ClientCredentials,
    http: reqwest::Client,
}

impl AccountsClient {
    /// An HTTP client that follows no redirects and gives up after `timeout`.
    pub fn new(
        _credentials: ClientCredentials,
        _timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        todo!("zoho helper")
    }

    pub fn credentials(&self) -> &ClientCredentials {
        &self.credentials
    }

    /// `{accounts}/oauth/v2/auth?…` with the comma-separated `scope`, `access_type=offline`, `state`, PKCE S256,
    /// and `prompt=consent` when asked for.
    pub fn authorization_url(
        &self,
        _accounts: &Url,
        _scope: &str,
        _state: &str,
        _code_challenge: &str,
        _prompt_consent: bool,
    ) -> Url {
        todo!("zoho helper")
    }

    /// `grant_type=authorization_code` at `{accounts_server}/oauth/v2/token`.
    pub async fn exchange_code(
        &self,
        _accounts_server: &Url,
        _code: &str,
        _code_verifier: &str,
    ) -> Result<TokenGrant, AccountsError> {
        let _ = &self.http;
        todo!("zoho helper")
    }

    /// `grant_type=refresh_token` at `{accounts_server}/oauth/v2/token`.
    pub async fn refresh(
        &self,
        _accounts_server: &Url,
        _refresh_token: &str,
    ) -> Result<TokenGrant, AccountsError> {
        todo!("zoho helper")
    }

    /// `POST {accounts_server}/oauth/v2/token/revoke?token=…`.
    pub async fn revoke(&self, _accounts_server: &Url, _token: &str) -> Result<(), AccountsError> {
        todo!("zoho helper")
    }
}
