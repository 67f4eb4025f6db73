//! The token manager: the one place that turns a stored token into a valid access token, refreshing it when it
//! is about to expire, at most once at a time per token, and the one place that logs users in and out of Zoho.
//!
//! Routes ask it for access tokens; they never read the store or call Zoho's token endpoint themselves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::{OAuthToken, StoreError, TokenStore};
use crate::zoho::crm::{CrmOrg, CrmUser};
use crate::zoho::{AccountsClient, AccountsError, CrmClient, CrmError, ZohoHosts};

/// A valid access token for one stored token, and where to use it. `Debug` never prints the token.
#[derive(Clone)]
pub struct AccessToken {
    pub token_id: String,
    pub access_token: String,
    pub api_domain: Url,
}

/// A user logged in: the token is stored (upserted by `user_name = email:org_id`) under `token_id`.
#[derive(Debug, Clone)]
pub struct Login {
    pub token_id: String,
    pub user: CrmUser,
    pub org: CrmOrg,
}

/// The result of a completed code exchange.
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    LoggedIn(Box<Login>),
    /// Zoho returned no refresh token and none is stored for this user: go round once more with
    /// `prompt=consent`. Nothing was stored.
    NeedsConsent,
}

/// Why no access token could be had, classified by what the portal does about it.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The session's token is not in the store (deleted by an administrator, another process, a disconnect).
    #[error("your Zoho session has ended, please log in again")]
    NotStored,
    /// The refresh token is dead (`invalid_code`); the token was deleted if it was still the stored one.
    #[error("your Zoho session has ended, please log in again")]
    Dead,
    #[error("Zoho is throttling token refreshes; try again in a few minutes")]
    Throttled,
    #[error("the portal's Zoho client is misconfigured: {0}")]
    Misconfigured(String),
    #[error("Zoho Accounts did not answer in time")]
    Timeout,
    #[error("Zoho Accounts could not be reached")]
    Unreachable(#[source] AccountsError),
    /// The token endpoint or CRM said something the portal cannot use (a forged `api_domain`, …).
    #[error("unexpected answer from Zoho: {0}")]
    Protocol(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A CRM call made during login or through [`TokenManager::call`] failed.
    #[error(transparent)]
    Crm(#[from] CrmError),
}

/// Hands out valid access tokens; see the module documentation.
pub struct TokenManager {
    store: Arc<dyn TokenStore>,
    accounts: AccountsClient,
    crm: CrmClient,
    hosts: ZohoHosts,
    leeway: Duration,
}

impl TokenManager {
    pub fn new(
        store: Arc<dyn TokenStore>,
        accounts: AccountsClient,
        crm: CrmClient,
        hosts: ZohoHosts,
        leeway: Duration,
    ) -> Self {
        Self {
            store,
            accounts,
            crm,
            hosts,
            leeway,
        }
    }

    pub fn accounts(&self) -> &AccountsClient {
        &self.accounts
    }

    pub fn crm(&self) -> &CrmClient {
        &self.crm
    }

    pub fn hosts(&self) -> &ZohoHosts {
        &self.hosts
    }

    /// Exchanges a callback's code at the (already validated) `accounts_server`, identifies the user as the v8
    /// SDK does (`users?type=CurrentUser` and `org`), and upserts the token by `user_name = email:org_id`. When a
    /// new refresh token replaces a stored one, the old one is revoked.
    pub async fn login(
        &self,
        _accounts_server: &Url,
        _code: &str,
        _code_verifier: &str,
    ) -> Result<LoginOutcome, TokenError> {
        let _ = (&self.store, self.leeway);
        todo!("zoho helper")
    }

    /// A valid access token for stored token `token_id`, refreshed first when fewer than the leeway's seconds
    /// remain. Reads through the store every time; at most one refresh per token runs at a time.
    pub async fn access_token_for(&self, _token_id: &str) -> Result<AccessToken, TokenError> {
        todo!("zoho helper")
    }

    /// Runs a CRM call with a valid access token; when CRM rejects the token (`INVALID_TOKEN`,
    /// `AUTHENTICATION_FAILURE`), refreshes once and retries once.
    pub async fn call<T, F, Fut>(&self, _token_id: &str, _call: F) -> Result<T, TokenError>
    where
        F: Fn(AccessToken) -> Fut,
        Fut: Future<Output = Result<T, CrmError>>,
    {
        todo!("zoho helper")
    }

    /// Disconnects from Zoho: revokes the refresh token at the user's data centre, then deletes the token.
    pub async fn disconnect(&self, _token_id: &str) -> Result<(), TokenError> {
        todo!("zoho helper")
    }

    /// Every stored token, for the administrators' page.
    pub async fn tokens(&self) -> Result<Vec<OAuthToken>, TokenError> {
        todo!("zoho helper")
    }

    /// Deletes one stored token (central revocation from the administrators' page).
    pub async fn delete_token(&self, _token_id: &str) -> Result<(), TokenError> {
        todo!("zoho helper")
    }

    /// Deletes every stored token.
    pub async fn delete_tokens(&self) -> Result<(), TokenError> {
        todo!("zoho helper")
    }
}
