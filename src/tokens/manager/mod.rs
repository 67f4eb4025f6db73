//! The token manager: the one place that turns a stored token into a valid access token, refreshing it when it
//! is about to expire, at most once at a time per token, and the one place that logs users in and out of Zoho.
//!
//! Routes ask it for access tokens (through [`TokenManager::call`], or the CRM facade built on it); they never
//! read the store or call Zoho's token endpoint themselves. Its parts: logging in and out ([`login`](self)'s
//! file), refreshing, and the single flight that keeps one refresh per token at a time.

mod flight;
mod login;
mod refresh;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use url::Url;

use super::{OAuthToken, Secret, StoreError, TokenStore, now_millis};
use crate::telemetry::Telemetry;
use crate::zoho::crm::{CrmOrg, CrmUser};
use crate::zoho::{
    AccountsClient, AccountsError, CallKind, CrmAuth, CrmClient, CrmError, CrmGate, CrmLimits,
    GateError, Lane, OrgKey, ZohoHosts,
};
use flight::FlightLocks;

/// A valid access token for one stored token, and where to use it. `Debug` never prints the token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub token_id: String,
    pub access_token: Secret,
    pub api_domain: Url,
}

/// A user logged in: the token is stored (upserted by `user_name = email:org_id`) under `token_id`.
#[derive(Debug, Clone)]
pub struct Login {
    pub token_id: String,
    pub user: CrmUser,
    pub org: CrmOrg,
    /// Whether the login stored a new row: no token of the user's was stored, so any sign-in still recorded
    /// for the user belonged to a token since deleted (its id may be this one's again) and must end.
    pub new_token: bool,
}

impl Login {
    /// The `user_name` the token is stored under: `email:org_id`.
    pub fn user_name(&self) -> String {
        user_name_of(&self.user.email, &self.org.id)
    }

    /// Who this login's token belongs to, as a session keeps it.
    pub fn owner(&self) -> TokenOwner {
        TokenOwner {
            token_id: self.token_id.clone(),
            user_name: self.user_name(),
        }
    }
}

/// The stored `user_name` of a CRM user: `email:org_id`, as the Zoho SDKs key their tokens.
pub fn user_name_of(email: &str, org_id: &str) -> String {
    format!("{email}:{org_id}")
}

/// A stored token as a session (or an administrator's form) claims it: its id *and* the user it belongs to.
///
/// Store ids can be reused (most stores hand out `max + 1`, which comes back once the newest row is deleted),
/// so an id alone could point at somebody else's token later. Every manager path that reads a token for a
/// user checks that the stored `user_name` is still the owner's; a row that belongs to someone else is, for
/// this owner, [`TokenError::NotStored`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TokenOwner {
    /// The store's id of the token.
    pub token_id: String,
    /// The stored `user_name` (`email:org_id`) the token must still carry.
    pub user_name: String,
}

impl TokenOwner {
    /// Whether `stored` is this owner's token (same id and same user).
    pub fn owns(&self, stored: &OAuthToken) -> bool {
        stored.id.as_deref() == Some(self.token_id.as_str())
            && stored.user_name.as_deref() == Some(self.user_name.as_str())
    }
}

/// The result of a completed code exchange.
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    LoggedIn(Box<Login>),
    /// Zoho returned no refresh token and none is stored for this user: go round once more with
    /// `prompt=consent`. Nothing was stored.
    NeedsConsent,
}

/// What a [`TokenManager::disconnect`] did: the caller says so, rather than "revoked and deleted" for a token
/// that was not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnected {
    /// The owner's token was stored; it was revoked at Zoho (when it could be) and deleted.
    Deleted,
    /// Nothing to delete: the token was already gone, or its row now belongs to another user (left alone).
    AlreadyGone,
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
    /// The stored token's `api_domain` is not one of this portal's Zoho API domains: another portal sharing
    /// the store talks to another Zoho (each demo portal with a sandbox of its own, say), or another program
    /// wrote something else there. The token is left alone; a login through this portal replaces it.
    #[error(
        "the stored token's api_domain {stored:?} is not a Zoho API domain of this portal: every portal sharing a token store must talk to the same Zoho (ZOHO_ACCOUNTS_URL; in demo mode, one standalone `zylker-portal sandbox` for all)"
    )]
    ForeignApiDomain { stored: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A CRM call made during login or through [`TokenManager::call`] failed.
    #[error(transparent)]
    Crm(#[from] CrmError),
    /// A CRM call's turn at the org's gate did not come within the queue timeout (see `zoho::limits`).
    #[error("Zoho CRM is busy: no turn within the queue timeout")]
    Busy { retry_after: Duration },
}

impl From<GateError> for TokenError {
    fn from(error: GateError) -> Self {
        match error {
            GateError::Busy { retry_after } => TokenError::Busy { retry_after },
            GateError::Crm(error) => TokenError::Crm(error),
        }
    }
}

impl AccessToken {
    /// The token as the CRM client takes it.
    pub fn crm_auth(&self) -> CrmAuth<'_> {
        CrmAuth {
            api_domain: &self.api_domain,
            access_token: &self.access_token,
        }
    }
}

/// Hands out valid access tokens; see the module documentation.
pub struct TokenManager {
    store: Arc<dyn TokenStore>,
    accounts: AccountsClient,
    crm: CrmClient,
    hosts: ZohoHosts,
    leeway: Duration,
    flights: FlightLocks,
    /// The shortest access-token lifetime granted so far, in ms (see `effective_leeway_ms`).
    shortest_lifetime_ms: AtomicI64,
    /// Every CRM call takes its turn here (see `zoho::limits`).
    gate: CrmGate,
    telemetry: Arc<Telemetry>,
    /// How long a refresh lease lives when its holder never gives it back (see
    /// [`TokenStore::try_acquire_refresh_lease`]).
    lease_ttl: Duration,
    /// The access tokens read from the store lately and found fresh, by token id (see [`RecentRead`]).
    recent: DashMap<String, RecentRead>,
    /// How long a read is trusted: [`TRUSTED_READ`] unless [`Self::trusting_reads_for`] says otherwise.
    trust_reads_for: Duration,
}

/// How long an access token read from the store is used without reading the store again: as long as a sign-in's
/// verdict is trusted (`sign_ins::RECHECK_EVERY`), so that a token deleted or rewritten by another process ends
/// a page's use of the old one within the same second that ends its sign-in. A token CRM rejects is read
/// again at once, whatever this says (see [`TokenManager::call`]), as is one about to expire.
pub const TRUSTED_READ: Duration = super::sign_ins::RECHECK_EVERY;

/// Above this many remembered reads, those past [`TRUSTED_READ`] are forgotten.
const RECENT_READS_KEPT: usize = 10_000;

/// An access token as read from the store a moment ago.
struct RecentRead {
    read_at: Instant,
    /// The stored `user_name` it was read under: only its owner gets it.
    user_name: String,
    /// The stored expiry, in ms since the epoch: it stops being used as soon as it would not be fresh.
    expiry_ms: i64,
    token: AccessToken,
}

/// The refresh lease's lifetime unless [`TokenManager::with_refresh_lease_ttl`] says otherwise: a refresh
/// that has not ended by then has timed out at Zoho.
pub const DEFAULT_REFRESH_LEASE_TTL: Duration = Duration::from_secs(30);

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager")
            .field("accounts", &self.accounts)
            .field("hosts", &self.hosts)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    /// A manager over `store`; `leeway` is how long before expiry an access token is refreshed
    /// (`--refresh-leeway-secs`). Build it once and share it: the single flight and the CRM gate are per
    /// manager. The gate has the default limits until [`Self::with_limits`].
    pub fn new(
        store: Arc<dyn TokenStore>,
        accounts: AccountsClient,
        crm: CrmClient,
        hosts: ZohoHosts,
        leeway: Duration,
    ) -> Self {
        let telemetry = Arc::new(Telemetry::without_metrics());
        Self {
            store,
            accounts,
            crm,
            hosts,
            leeway,
            flights: FlightLocks::default(),
            shortest_lifetime_ms: AtomicI64::new(i64::MAX),
            gate: CrmGate::new(CrmLimits::default(), Arc::clone(&telemetry)),
            telemetry,
            lease_ttl: DEFAULT_REFRESH_LEASE_TTL,
            recent: DashMap::new(),
            trust_reads_for: TRUSTED_READ,
        }
    }

    /// Trusts an access token read from the store for `window` instead of [`TRUSTED_READ`]; zero reads the store
    /// for every call.
    pub fn trusting_reads_for(mut self, window: Duration) -> Self {
        self.trust_reads_for = window;
        self
    }

    /// The same manager with `limits` on its CRM calls, counting in `telemetry` (the portal's).
    pub fn with_limits(mut self, limits: CrmLimits, telemetry: Arc<Telemetry>) -> Self {
        self.gate = CrmGate::new(limits, Arc::clone(&telemetry));
        self.telemetry = telemetry;
        self
    }

    /// What this manager counts (refreshes, store reads, the gate's queue; the CRM client counts its calls).
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Sets how long a refresh lease outlives a holder that dies mid-refresh: a few seconds past the timeout of
    /// a call to Zoho, so that a live holder never loses it and a dead one blocks the others no longer.
    pub fn with_refresh_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Where to send a browser to log in: Zoho's authorization URL at the configured Accounts server, with
    /// this client's id and redirect URL, `state` and the PKCE challenge (`prompt=consent` on a consent round).
    pub fn authorization_url(
        &self,
        accounts_url: &Url,
        scope: &str,
        state: &Secret,
        code_challenge: &str,
        consent: bool,
    ) -> Url {
        self.accounts.authorization_url(
            accounts_url,
            scope,
            state.expose_secret(),
            code_challenge,
            consent,
        )
    }

    /// The Accounts server a callback's `accounts-server` names, if it is one of Zoho's (or the configured
    /// accounts URL's): the code, and the client secret with it, go nowhere else.
    pub fn accounts_server(&self, claimed: &str) -> Option<Url> {
        self.hosts.accounts_server(claimed)
    }

    /// A valid access token for stored token `token_id`, refreshed first when fewer than the leeway's seconds
    /// remain. Reads through the store, or uses what it read there less than [`TRUSTED_READ`] ago (a fresh
    /// token, for the same owner, that stays fresh); at most one refresh per token runs at a time.
    /// A token whose stored `user_name` is not the owner's is [`TokenError::NotStored`].
    #[tracing::instrument(level = "debug", skip_all, fields(token_id = %owner.token_id))]
    pub async fn access_token_for(&self, owner: &TokenOwner) -> Result<AccessToken, TokenError> {
        if let Some(token) = self.recently_read(owner) {
            self.telemetry.sign_in_seen(&owner.token_id);
            return Ok(token);
        }
        let stored = self.read(owner).await?;
        if self.is_fresh(&stored) {
            let token = self.access_token_from(&owner.token_id, &stored)?;
            self.remember_read(owner, &stored, &token);
            return Ok(token);
        }
        self.forget_read(&owner.token_id);
        self.refresh(owner, stored.access_token.as_ref(), false)
            .await
    }

    /// The owner's access token as read less than the trust window ago, while it stays fresh.
    fn recently_read(&self, owner: &TokenOwner) -> Option<AccessToken> {
        let recent = self.recent.get(&owner.token_id)?;
        let trusted = recent.read_at.elapsed() < self.trust_reads_for
            && recent.user_name == owner.user_name
            && recent.expiry_ms.saturating_sub(now_millis()) >= self.effective_leeway_ms();
        trusted.then(|| recent.token.clone())
    }

    fn remember_read(&self, owner: &TokenOwner, stored: &OAuthToken, token: &AccessToken) {
        if self.trust_reads_for.is_zero() {
            return;
        }
        if self.recent.len() >= RECENT_READS_KEPT {
            let window = self.trust_reads_for;
            self.recent
                .retain(|_, recent| recent.read_at.elapsed() < window);
        }
        self.recent.insert(
            owner.token_id.clone(),
            RecentRead {
                read_at: Instant::now(),
                user_name: owner.user_name.clone(),
                expiry_ms: stored.expiry_time.unwrap_or(0),
                token: token.clone(),
            },
        );
    }

    /// Reads the store again next time: the token was rejected, refreshed, replaced or deleted here.
    fn forget_read(&self, token_id: &str) {
        if !self.recent.is_empty() {
            self.recent.remove(token_id);
        }
    }

    /// Runs a CRM call with a valid access token, in its turn at the org's gate in the owner's lane (see
    /// `zoho::limits`: it may wait, users take turns, and it is tried again after a 429); when CRM rejects the
    /// token (`INVALID_TOKEN`, `AUTHENTICATION_FAILURE`), refreshes once and retries once.
    pub async fn call<T, F, Fut>(&self, owner: &TokenOwner, call: F) -> Result<T, TokenError>
    where
        F: Fn(AccessToken) -> Fut,
        Fut: Future<Output = Result<T, CrmError>>,
    {
        self.call_as(owner, CallKind::Plain, call).await
    }

    /// [`Self::call`] for a call of `kind`: a search also keeps within Zoho's sub-limit on concurrent searches
    /// (see `zoho::limits`).
    #[tracing::instrument(level = "debug", skip_all, fields(token_id = %owner.token_id))]
    pub async fn call_as<T, F, Fut>(
        &self,
        owner: &TokenOwner,
        kind: CallKind,
        call: F,
    ) -> Result<T, TokenError>
    where
        F: Fn(AccessToken) -> Fut,
        Fut: Future<Output = Result<T, CrmError>>,
    {
        let token = self.access_token_for(owner).await?;
        let org = OrgKey::of_token(token.api_domain.as_str(), &owner.user_name);
        self.gate.note_org(&org);
        let lane = Lane::User(owner.user_name.clone());
        let rejected = token.access_token.clone();
        match self
            .gate
            .run_as(&org, &lane, kind, || call(token.clone()))
            .await
        {
            Err(GateError::Crm(CrmError::InvalidToken(code))) => {
                tracing::info!(%code, "CRM rejected the access token; refreshing once and retrying once");
                self.forget_read(&owner.token_id);
                let token = self.refresh(owner, Some(&rejected), true).await?;
                self.gate
                    .run_as(&org, &lane, kind, || call(token.clone()))
                    .await
                    .map_err(TokenError::from)
            }
            other => other.map_err(TokenError::from),
        }
    }

    /// Whether the store answers a read, for the health check. An id that is never stored keeps it cheap.
    pub async fn check_store(&self) -> Result<(), TokenError> {
        self.with_store(|store| store.find_token_by_id("healthz-probe"))
            .await
            .map(|_| ())
    }

    /// Whether the owner's token is still stored and still the owner's: a plain read (no refresh, not counted
    /// as a page), for telling a person whose token was deleted from one who signed out.
    pub async fn holds_token_of(&self, owner: &TokenOwner) -> Result<bool, TokenError> {
        let id = owner.token_id.clone();
        let found = self
            .with_store(move |store| store.find_token_by_id(&id))
            .await?;
        Ok(found.is_some_and(|stored| owner.owns(&stored)))
    }

    /// Every stored token, for the administrators' page (which shows only its own organization's).
    pub async fn tokens(&self) -> Result<Vec<OAuthToken>, TokenError> {
        self.with_store(|store| store.get_tokens()).await
    }

    /// Deletes every stored token (every organization's: for tests and tools, not the administrators' page).
    #[tracing::instrument(skip_all)]
    pub async fn delete_tokens(&self) -> Result<(), TokenError> {
        self.with_store(|store| store.delete_tokens()).await?;
        self.recent.clear();
        tracing::info!("every token deleted");
        Ok(())
    }

    /// Reads the owner's token through the store: on this worker when the store can answer at once
    /// ([`TokenStore::find_token_by_id_without_waiting`]) or asynchronously
    /// ([`TokenStore::find_token_by_id_async`]), else on the blocking pool. [`TokenError::NotStored`] when it
    /// is gone or the row with that id now belongs to another user.
    async fn read(&self, owner: &TokenOwner) -> Result<OAuthToken, TokenError> {
        let started = std::time::Instant::now();
        let id = owner.token_id.as_str();
        let found = if let Some(found) = self.store.find_token_by_id_without_waiting(id) {
            found?
        } else if let Some(reading) = self.store.find_token_by_id_async(id) {
            reading.await?
        } else {
            let id = id.to_owned();
            self.with_store(move |store| store.find_token_by_id(&id))
                .await?
        };
        self.telemetry.store_read(started.elapsed());
        let stored = found.ok_or(TokenError::NotStored)?;
        self.telemetry.sign_in_seen(&owner.token_id);
        if stored.user_name.as_deref() != Some(owner.user_name.as_str()) {
            tracing::warn!(
                "the token id now belongs to another user; treating the owner's token as gone"
            );
            return Err(TokenError::NotStored);
        }
        Ok(stored)
    }

    fn access_token_from(
        &self,
        token_id: &str,
        stored: &OAuthToken,
    ) -> Result<AccessToken, TokenError> {
        let access_token = stored
            .access_token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                TokenError::Protocol("the stored token has no access token".to_owned())
            })?;
        Ok(AccessToken {
            token_id: token_id.to_owned(),
            access_token,
            api_domain: self.stored_api_domain(stored)?,
        })
    }

    /// The stored `api_domain`, held to the same rule as at login: another writer may have put anything there.
    fn stored_api_domain(&self, stored: &OAuthToken) -> Result<Url, TokenError> {
        stored
            .api_domain
            .as_deref()
            .and_then(|domain| self.hosts.api_domain(domain))
            .ok_or_else(|| TokenError::ForeignApiDomain {
                stored: stored.api_domain.clone().unwrap_or_default(),
            })
    }

    /// Runs store work on the blocking pool: a store may block (rusqlite), async workers must not.
    async fn with_store<T, F>(&self, work: F) -> Result<T, TokenError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn TokenStore) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || work(store.as_ref())).await {
            Ok(result) => result.map_err(TokenError::from),
            Err(join) => Err(StoreError::backend("the token store task failed", join).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_debug_redacts() {
        let token = AccessToken {
            token_id: "1".to_owned(),
            access_token: Secret::from("1000.very-secret"),
            api_domain: Url::parse("https://www.zohoapis.com").unwrap(),
        };
        assert!(!format!("{token:?}").contains("very-secret"));
    }
}
