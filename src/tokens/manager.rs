//! The token manager: the one place that turns a stored token into a valid access token, refreshing it when it
//! is about to expire, at most once at a time per token, and the one place that logs users in and out of Zoho.
//!
//! Routes ask it for access tokens; they never read the store or call Zoho's token endpoint themselves.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use url::Url;

use super::{OAuthToken, StoreError, TokenStore, now_millis};
use crate::telemetry::Telemetry;
use crate::zoho::crm::{CrmOrg, CrmUser};
use crate::zoho::{
    AccountsClient, AccountsError, CrmAuth, CrmClient, CrmError, CrmGate, CrmLimits, GateError,
    OrgKey, TokenGrant, ZohoHosts,
};

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

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token_id", &self.token_id)
            .field("access_token", &"<redacted>")
            .field("api_domain", &self.api_domain.as_str())
            .finish()
    }
}

/// One async mutex per token id with a refresh in flight or waited for; it guards what the last flight left
/// for those waiting behind it.
type FlightLocks = DashMap<String, Arc<tokio::sync::Mutex<FlightLog>>>;

/// What a flight leaves for the requests that waited behind it.
#[derive(Default)]
struct FlightLog {
    last_failure: Option<LoggedFailure>,
}

struct LoggedFailure {
    at: Instant,
    /// The access token that was stored when the refresh was tried.
    access_token: Option<String>,
    failure: SharedFailure,
}

impl FlightLog {
    /// The failure of a refresh that ended after `boarded`, tried on the token that is still stored.
    fn failure_since(&self, boarded: Instant, stored: &OAuthToken) -> Option<&SharedFailure> {
        self.last_failure
            .as_ref()
            .filter(|logged| logged.at >= boarded && logged.access_token == stored.access_token)
            .map(|logged| &logged.failure)
    }
}

/// A refresh failure in a form every waiter can be given a copy of.
#[derive(Debug, Clone)]
enum SharedFailure {
    Throttled,
    Misconfigured(String),
    Timeout,
    Unreachable,
    Protocol(String),
}

impl SharedFailure {
    /// Failures worth sharing; a dead token deletes the row, which waiters find out by reading.
    fn of(error: &TokenError) -> Option<Self> {
        match error {
            TokenError::Throttled => Some(Self::Throttled),
            TokenError::Misconfigured(what) => Some(Self::Misconfigured(what.clone())),
            TokenError::Timeout => Some(Self::Timeout),
            TokenError::Unreachable(_) => Some(Self::Unreachable),
            TokenError::Protocol(what) => Some(Self::Protocol(what.clone())),
            _ => None,
        }
    }

    fn to_error(&self) -> TokenError {
        match self {
            Self::Throttled => TokenError::Throttled,
            Self::Misconfigured(what) => TokenError::Misconfigured(what.clone()),
            Self::Timeout => TokenError::Timeout,
            Self::Unreachable => TokenError::Unreachable(AccountsError::Protocol(
                "Zoho Accounts could not be reached (by the refresh this request waited for)"
                    .to_owned(),
            )),
            Self::Protocol(what) => TokenError::Protocol(what.clone()),
        }
    }
}

/// Above this many entries, idle locks left behind by cancelled waits are swept.
const FLIGHT_SWEEP_THRESHOLD: usize = 1024;

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
}

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
        }
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

    /// The Accounts client (authorization URLs, revoke).
    pub fn accounts(&self) -> &AccountsClient {
        &self.accounts
    }

    /// The CRM client, for the calls made through [`Self::call`]. The portal's workers each use a client of
    /// their own made from it ([`CrmClient::for_worker`]).
    pub fn crm(&self) -> &CrmClient {
        &self.crm
    }

    /// The host policy (which `accounts-server` and `api_domain` values are Zoho's).
    pub fn hosts(&self) -> &ZohoHosts {
        &self.hosts
    }

    /// The store every read and write goes through.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    /// Exchanges a callback's code at the (already validated) `accounts_server`, identifies the user as the v8
    /// SDK does (`users?type=CurrentUser` and `org`), and upserts the token by `user_name = email:org_id`. When a
    /// new refresh token replaces a stored one, the old one is revoked.
    ///
    /// An `api_domain` that is not Zoho's (nor the configured accounts URL's host) is a
    /// [`TokenError::Protocol`]: no CRM call goes there and nothing is stored. The code is spent and is not
    /// persisted. When Zoho returns no refresh token and none is stored for the user (of this client), the
    /// answer is [`LoginOutcome::NeedsConsent`] and nothing is stored; when one is stored, it is kept.
    #[tracing::instrument(skip_all, fields(accounts_server = %accounts_server, user_name, token_id))]
    pub async fn login(
        &self,
        accounts_server: &Url,
        code: &str,
        code_verifier: &str,
    ) -> Result<LoginOutcome, TokenError> {
        let grant = self
            .accounts
            .exchange_code(accounts_server, code, code_verifier)
            .await
            .map_err(|error| accounts_failure("code exchange", error))?;
        let Some(api_domain) = grant
            .api_domain
            .as_deref()
            .and_then(|claimed| self.hosts.api_domain(claimed))
        else {
            tracing::warn!(
                api_domain = ?grant.api_domain,
                "refusing a token answer whose api_domain is not a Zoho API domain"
            );
            if let Some(refresh_token) = &grant.refresh_token {
                // Do not leave an unusable refresh token taking one of the user's 20 slots.
                self.revoke_quietly(accounts_server, refresh_token, "refused login")
                    .await;
            }
            return Err(TokenError::Protocol(
                "the token answer names an API domain that is not Zoho's".to_owned(),
            ));
        };

        let auth = CrmAuth {
            api_domain: &api_domain,
            access_token: &grant.access_token,
        };
        let gate = self.gate.login_key(api_domain.as_str());
        let identity = async {
            Ok::<_, GateError>((
                self.gate.run(&gate, || self.crm.current_user(auth)).await?,
                self.gate.run(&gate, || self.crm.org(auth)).await?,
            ))
        };
        let (user, org) = match identity.await {
            Ok(identity) => identity,
            Err(error) => {
                tracing::warn!(%error, "could not identify the user; nothing stored");
                if let Some(refresh_token) = &grant.refresh_token {
                    self.revoke_quietly(accounts_server, refresh_token, "unidentified login")
                        .await;
                }
                return Err(error.into());
            }
        };
        self.gate
            .note_org(&OrgKey::new(api_domain.as_str(), &org.id));
        let user_name = user_name_of(&user.email, &org.id);
        tracing::Span::current().record("user_name", user_name.as_str());

        let stored = {
            let partial = OAuthToken {
                user_name: Some(user_name.clone()),
                ..OAuthToken::default()
            };
            self.with_store(move |store| store.find_token(&partial))
                .await?
        };
        let credentials = self.accounts.credentials();
        // A refresh token stored for another client cannot be refreshed with ours.
        let stored_refresh = stored
            .as_ref()
            .filter(|t| {
                t.client_id
                    .as_deref()
                    .is_none_or(|id| id == credentials.client_id)
            })
            .and_then(|t| t.refresh_token.clone())
            .filter(|t| !t.is_empty());
        let (refresh_token, replaced) = match (grant.refresh_token.clone(), stored_refresh) {
            (Some(new), old) => {
                let replaced = old.filter(|old| *old != new);
                (new, replaced)
            }
            (None, Some(kept)) => (kept, None),
            (None, None) => {
                tracing::info!("Zoho returned no refresh token and none is stored: consent needed");
                return Ok(LoginOutcome::NeedsConsent);
            }
        };

        let mut token = OAuthToken {
            id: None,
            user_name: Some(user_name),
            client_id: Some(credentials.client_id.clone()),
            client_secret: Some(credentials.client_secret.clone()),
            refresh_token: Some(refresh_token),
            access_token: Some(grant.access_token.clone()),
            // The code is spent: keeping it would only give the SDK's matching rules a stale key.
            grant_token: None,
            expiry_time: Some(self.granted(grant.expires_in)),
            redirect_url: Some(credentials.redirect_url.as_str().to_owned()),
            api_domain: Some(api_domain.origin().ascii_serialization()),
        };
        let saved = self
            .with_store(move |store| {
                store.save_token(&mut token)?;
                Ok(token.id)
            })
            .await
            .and_then(|id| {
                id.ok_or_else(|| TokenError::Protocol("the store assigned no id".to_owned()))
            });
        let token_id = match saved {
            Ok(token_id) => token_id,
            Err(error) => {
                // Nothing holds the new refresh token now: give it back rather than leave it taking one of the
                // user's 20 slots at Zoho.
                if let Some(new) = grant.refresh_token.as_deref() {
                    self.revoke_quietly(accounts_server, new, "unsaved login")
                        .await;
                }
                return Err(error);
            }
        };
        tracing::Span::current().record("token_id", token_id.as_str());
        tracing::info!("logged in; token saved");

        if let Some(old) = replaced {
            let old_accounts = stored
                .as_ref()
                .and_then(|t| t.api_domain.as_deref())
                .and_then(|domain| self.hosts.accounts_for_api_domain(domain))
                .unwrap_or_else(|| accounts_server.clone());
            self.revoke_quietly(&old_accounts, &old, "replaced refresh token")
                .await;
        }
        Ok(LoginOutcome::LoggedIn(Box::new(Login {
            token_id,
            user,
            org,
        })))
    }

    /// A valid access token for stored token `token_id`, refreshed first when fewer than the leeway's seconds
    /// remain. Reads through the store every time; at most one refresh per token runs at a time.
    /// A token whose stored `user_name` is not the owner's is [`TokenError::NotStored`].
    #[tracing::instrument(skip_all, fields(token_id = %owner.token_id))]
    pub async fn access_token_for(&self, owner: &TokenOwner) -> Result<AccessToken, TokenError> {
        let stored = self.read(owner).await?;
        if self.is_fresh(&stored) {
            return self.access_token_from(&owner.token_id, &stored);
        }
        self.refresh(owner, stored.access_token.as_deref(), false)
            .await
    }

    /// Runs a CRM call with a valid access token, in its turn at the org's gate (see `zoho::limits`: it may
    /// wait, and is tried again after a 429); when CRM rejects the token (`INVALID_TOKEN`,
    /// `AUTHENTICATION_FAILURE`), refreshes once and retries once.
    #[tracing::instrument(skip_all, fields(token_id = %owner.token_id))]
    pub async fn call<T, F, Fut>(&self, owner: &TokenOwner, call: F) -> Result<T, TokenError>
    where
        F: Fn(AccessToken) -> Fut,
        Fut: Future<Output = Result<T, CrmError>>,
    {
        let token = self.access_token_for(owner).await?;
        let org = OrgKey::of_token(token.api_domain.as_str(), &owner.user_name);
        self.gate.note_org(&org);
        let rejected = token.access_token.clone();
        match self.gate.run(&org, || call(token.clone())).await {
            Err(GateError::Crm(CrmError::InvalidToken(code))) => {
                tracing::info!(%code, "CRM rejected the access token; refreshing once and retrying once");
                let token = self.refresh(owner, Some(&rejected), true).await?;
                self.gate
                    .run(&org, || call(token.clone()))
                    .await
                    .map_err(TokenError::from)
            }
            other => other.map_err(TokenError::from),
        }
    }

    /// Disconnects from Zoho: revokes the refresh token at the user's data centre, then deletes the token.
    ///
    /// The token is deleted here even when the revoke fails (Zoho unreachable, throttled, an `api_domain` with
    /// no known Accounts server): the user asked to be disconnected, and a token the portal no longer holds
    /// cannot be used by it. The failure is logged as a warning; the refresh token then stays valid at Zoho
    /// until the user removes the portal under Connected Apps. Zoho's HTTP 400 (the token was already invalid)
    /// counts as revoked. A token that is not stored any more, or whose row now belongs to another user (ids
    /// are reused), is already disconnected for this owner: `Ok`, and nothing of the other user's is touched.
    /// Administrators' central revocation goes through here too.
    #[tracing::instrument(skip_all, fields(token_id = %owner.token_id))]
    pub async fn disconnect(&self, owner: &TokenOwner) -> Result<(), TokenError> {
        let stored = match self.read(owner).await {
            Ok(stored) => stored,
            Err(TokenError::NotStored) => {
                tracing::info!("nothing to disconnect: the owner's token is not stored");
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        if let Some(refresh_token) = stored.refresh_token.as_deref().filter(|t| !t.is_empty()) {
            match stored
                .api_domain
                .as_deref()
                .and_then(|domain| self.hosts.accounts_for_api_domain(domain))
            {
                Some(accounts_server) => {
                    match self.accounts.revoke(&accounts_server, refresh_token).await {
                        Ok(()) => tracing::info!("refresh token revoked at Zoho"),
                        Err(AccountsError::Dead) => {
                            tracing::info!("Zoho no longer knew the refresh token")
                        }
                        Err(error) => tracing::warn!(
                            %error,
                            "could not revoke the refresh token at Zoho; deleting it here anyway"
                        ),
                    }
                }
                None => tracing::warn!(
                    api_domain = ?stored.api_domain,
                    "no known Accounts server for the stored api_domain; deleting the token without revoking"
                ),
            }
        }
        self.delete_owned(owner).await
    }

    /// Whether the store answers a read, for the health check. An id that is never stored keeps it cheap.
    pub async fn check_store(&self) -> Result<(), TokenError> {
        self.with_store(|store| store.find_token_by_id("healthz-probe"))
            .await
            .map(|_| ())
    }

    /// Every stored token, for the administrators' page (which shows only its own organization's).
    pub async fn tokens(&self) -> Result<Vec<OAuthToken>, TokenError> {
        self.with_store(|store| store.get_tokens()).await
    }

    /// Deletes the owner's token, and only while the row is still the owner's: between reading and deleting,
    /// the row may have been deleted and its id handed to another user's login.
    async fn delete_owned(&self, owner: &TokenOwner) -> Result<(), TokenError> {
        let owner_now = owner.clone();
        let deleted = self
            .with_store(move |store| {
                // Compare-and-delete on the access token just read: a row rewritten in between by another
                // user's login is left alone; one refreshed in between (still the owner's) is tried again.
                for _ in 0..3 {
                    let Some(stored) = store.find_token_by_id(&owner_now.token_id)? else {
                        return Ok(false);
                    };
                    if !owner_now.owns(&stored) {
                        return Ok(false);
                    }
                    if store.delete_token_if_unchanged(
                        &owner_now.token_id,
                        stored.access_token.as_deref(),
                    )? {
                        return Ok(true);
                    }
                }
                Ok(false)
            })
            .await?;
        if deleted {
            tracing::info!("token deleted");
        } else {
            tracing::info!("the token was gone or no longer the owner's; nothing deleted");
        }
        Ok(())
    }

    /// Deletes every stored token (every organization's: for tests and tools, not the administrators' page).
    #[tracing::instrument(skip_all)]
    pub async fn delete_tokens(&self) -> Result<(), TokenError> {
        self.with_store(|store| store.delete_tokens()).await?;
        tracing::info!("every token deleted");
        Ok(())
    }

    /// The refresh path, one flight per token id. `seen` is the access token the caller found wanting: about
    /// to expire, or (when `rejected`) just refused by CRM.
    ///
    /// Waiters use the result of the flight they waited for: a token written meanwhile (by that flight, another
    /// process or a login) is used as long as it has not expired, even inside the leeway, so that an access
    /// lifetime shorter than the leeway cannot turn a burst of requests into a burst of refreshes; and a
    /// failure of that flight (throttled, timeout, …) is answered to them too, rather than tried again by each.
    async fn refresh(
        &self,
        owner: &TokenOwner,
        seen: Option<&str>,
        rejected: bool,
    ) -> Result<AccessToken, TokenError> {
        let token_id = owner.token_id.as_str();
        let boarded = Instant::now();
        let mut flight = Flight::board(&self.flights, token_id).await;
        // Re-read after waiting: whoever held the flight (or another process) may have refreshed already.
        let stored = self.read(owner).await?;
        let changed = stored.access_token.as_deref() != seen;
        if (changed && unexpired(&stored)) || (!rejected && self.is_fresh(&stored)) {
            tracing::debug!("the stored token was refreshed meanwhile; using it");
            return self.access_token_from(token_id, &stored);
        }
        if let Some(failure) = flight
            .log()
            .and_then(|log| log.failure_since(boarded, &stored))
        {
            tracing::debug!("the refresh this request waited for failed; answering the same");
            return Err(failure.to_error());
        }
        let attempted = stored.access_token.clone();
        let result = self.refresh_stored(owner, stored).await;
        if let Some(log) = flight.log() {
            log.last_failure = result
                .as_ref()
                .err()
                .and_then(SharedFailure::of)
                .map(|failure| LoggedFailure {
                    at: Instant::now(),
                    access_token: attempted,
                    failure,
                });
        }
        result
    }

    /// Refreshes `stored` at its data centre and writes the result with compare-and-set.
    async fn refresh_stored(
        &self,
        owner: &TokenOwner,
        stored: OAuthToken,
    ) -> Result<AccessToken, TokenError> {
        let token_id = owner.token_id.as_str();
        let Some(refresh_token) = stored.refresh_token.as_deref().filter(|t| !t.is_empty()) else {
            // Nothing to refresh with: only a new login helps. The row is left to that login's upsert.
            tracing::warn!("the stored token has no refresh token");
            return Err(TokenError::Dead);
        };
        let api_domain = self.stored_api_domain(&stored)?;
        let accounts_server = self
            .hosts
            .accounts_for_api_domain(api_domain.as_str())
            .ok_or_else(|| {
                TokenError::Protocol(
                    "no known Accounts server for the stored api_domain".to_owned(),
                )
            })?;
        let seen = stored.access_token.clone();
        let answer = self.accounts.refresh(&accounts_server, refresh_token).await;
        self.telemetry.refresh(refresh_outcome(&answer));
        match answer {
            Ok(grant) => {
                let expiry = self.granted(grant.expires_in);
                let (id, expected, fresh) = (token_id.to_owned(), seen, grant.access_token.clone());
                let won = self
                    .with_store(move |store| {
                        store.compare_and_set_access_token(&id, expected.as_deref(), &fresh, expiry)
                    })
                    .await?;
                if won {
                    tracing::info!("access token refreshed");
                    return Ok(AccessToken {
                        token_id: token_id.to_owned(),
                        access_token: grant.access_token,
                        api_domain,
                    });
                }
                // Someone else (another process, a login) wrote first: theirs is the token now.
                tracing::info!("another writer refreshed first; using the stored token");
                let theirs = self.read(owner).await?;
                self.access_token_from(token_id, &theirs)
            }
            Err(AccountsError::Dead) => {
                let (id, expected) = (token_id.to_owned(), seen);
                let deleted = self
                    .with_store(move |store| {
                        store.delete_token_if_unchanged(&id, expected.as_deref())
                    })
                    .await?;
                if deleted {
                    tracing::warn!("the refresh token is dead; token deleted");
                    return Err(TokenError::Dead);
                }
                // The row changed meanwhile (a new login, another refresher): use it if it is good and
                // still the owner's (the id may have gone to another user's login meanwhile).
                match self.read(owner).await {
                    Ok(current) if unexpired(&current) => {
                        self.access_token_from(token_id, &current)
                    }
                    Err(TokenError::NotStored) => Err(TokenError::NotStored),
                    _ => {
                        tracing::warn!(
                            "the refresh token is dead; the stored token had changed and was kept"
                        );
                        Err(TokenError::Dead)
                    }
                }
            }
            Err(error) => Err(accounts_failure("refresh", error)),
        }
    }

    /// The expiry of an access token granted now for `lifetime`, noting the lifetime.
    fn granted(&self, lifetime: Duration) -> i64 {
        self.note_lifetime(lifetime);
        expiry_after(lifetime)
    }

    /// Reads the owner's token through the store: on this worker when the store can answer at once
    /// ([`TokenStore::find_token_by_id_without_waiting`]), else on the blocking pool. [`TokenError::NotStored`]
    /// when it is gone or the row with that id now belongs to another user.
    async fn read(&self, owner: &TokenOwner) -> Result<OAuthToken, TokenError> {
        let started = Instant::now();
        let found = match self.store.find_token_by_id_without_waiting(&owner.token_id) {
            Some(found) => found.map_err(TokenError::from)?,
            None => {
                let id = owner.token_id.clone();
                self.with_store(move |store| store.find_token_by_id(&id))
                    .await?
            }
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

    /// Whether the stored access token has at least the leeway left (an unknown expiry is not fresh).
    fn is_fresh(&self, token: &OAuthToken) -> bool {
        let has_access = token.access_token.as_deref().is_some_and(|t| !t.is_empty());
        let leeway = self.effective_leeway_ms();
        has_access
            && token
                .expiry_time
                .is_some_and(|expiry| expiry.saturating_sub(now_millis()) >= leeway)
    }

    /// The leeway, but never more than half the shortest access-token lifetime Zoho has granted: with tokens
    /// that live less than twice the leeway, "refresh when fewer than the leeway remain" would refresh on
    /// nearly every request and Zoho would throttle after ten. Zoho's tokens live an hour, so with the default
    /// leeway this never changes anything; it matters for a sandbox run with a short `--access-ttl`.
    fn effective_leeway_ms(&self) -> i64 {
        let configured = i64::try_from(self.leeway.as_millis()).unwrap_or(i64::MAX);
        configured.min(self.shortest_lifetime_ms.load(Ordering::Relaxed) / 2)
    }

    /// Notes a granted lifetime (see [`Self::effective_leeway_ms`]); warns once when it is below twice the
    /// leeway.
    fn note_lifetime(&self, lifetime: Duration) {
        let lifetime_ms = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
        let previous = self
            .shortest_lifetime_ms
            .fetch_min(lifetime_ms, Ordering::Relaxed);
        let leeway_ms = i64::try_from(self.leeway.as_millis()).unwrap_or(i64::MAX);
        if lifetime_ms < previous && lifetime_ms / 2 < leeway_ms {
            tracing::warn!(
                lifetime_secs = lifetime.as_secs(),
                leeway_secs = self.leeway.as_secs(),
                "access tokens live less than twice the refresh leeway; refreshing when half their life is left"
            );
        }
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
            .ok_or_else(|| {
                TokenError::Protocol("the stored api_domain is not a Zoho API domain".to_owned())
            })
    }

    /// Revokes a refresh token the portal no longer needs; a failure is logged, never returned.
    async fn revoke_quietly(&self, accounts_server: &Url, refresh_token: &str, why: &str) {
        match self.accounts.revoke(accounts_server, refresh_token).await {
            Ok(()) => tracing::info!(why, "old refresh token revoked"),
            Err(error) => tracing::warn!(why, %error, "could not revoke an old refresh token"),
        }
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

/// A turn at refreshing one token: holds that token's lock, and on drop (also when the waiting future is
/// cancelled) removes the lock from the map once nobody else holds or waits for it.
struct Flight<'a> {
    locks: &'a FlightLocks,
    token_id: &'a str,
    guard: Option<tokio::sync::OwnedMutexGuard<FlightLog>>,
}

impl<'a> Flight<'a> {
    async fn board(locks: &'a FlightLocks, token_id: &'a str) -> Flight<'a> {
        if locks.len() > FLIGHT_SWEEP_THRESHOLD {
            // `retain` holds each shard's lock, so no clone can be taken while an entry is judged idle.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        let lock = Arc::clone(locks.entry(token_id.to_owned()).or_default().value());
        let mut flight = Flight {
            locks,
            token_id,
            guard: None,
        };
        flight.guard = Some(lock.lock_owned().await);
        flight
    }

    /// The log of this token's flights; `None` never happens once boarded.
    fn log(&mut self) -> Option<&mut FlightLog> {
        self.guard.as_deref_mut()
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        // Release our handle first; the map's own handle is then the only one left if nobody waits.
        drop(self.guard.take());
        self.locks
            .remove_if(self.token_id, |_, lock| Arc::strong_count(lock) == 1);
    }
}

/// Whether the stored access token has not expired yet (leeway aside).
fn unexpired(token: &OAuthToken) -> bool {
    let has_access = token.access_token.as_deref().is_some_and(|t| !t.is_empty());
    has_access
        && token
            .expiry_time
            .is_some_and(|expiry| expiry > now_millis())
}

/// Epoch milliseconds when an access token granted now for `lifetime` expires.
fn expiry_after(lifetime: Duration) -> i64 {
    now_millis().saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX))
}

/// The outcome label of a refresh at Zoho Accounts.
fn refresh_outcome(answer: &Result<TokenGrant, AccountsError>) -> &'static str {
    match answer {
        Ok(_) => "ok",
        Err(AccountsError::Dead) => "dead",
        Err(AccountsError::Throttled) => "throttled",
        Err(AccountsError::Misconfigured(_)) => "misconfigured",
        Err(AccountsError::Rejected(_)) => "rejected",
        Err(AccountsError::Timeout) => "timeout",
        Err(AccountsError::Unreachable(_)) => "unreachable",
        Err(AccountsError::Protocol(_)) => "protocol",
    }
}

/// Maps a failed token-endpoint call to what the portal does about it; a misconfiguration is logged loudly.
fn accounts_failure(during: &'static str, error: AccountsError) -> TokenError {
    match error {
        AccountsError::Dead => TokenError::Dead,
        AccountsError::Throttled => {
            tracing::warn!(
                during,
                "Zoho is throttling token requests; the token is kept"
            );
            TokenError::Throttled
        }
        AccountsError::Misconfigured(what) => {
            tracing::error!(
                during,
                zoho_error = %what,
                "ZOHO CLIENT MISCONFIGURED: Zoho rejected the portal's client id, secret or redirect URL; \
                 check --client-id, --client-secret and --public-url against Zoho's API console"
            );
            TokenError::Misconfigured(what)
        }
        AccountsError::Rejected(what) => {
            TokenError::Protocol(format!("Zoho refused the {during} ({what})"))
        }
        AccountsError::Timeout => TokenError::Timeout,
        error @ AccountsError::Unreachable(_) => TokenError::Unreachable(error),
        AccountsError::Protocol(what) => TokenError::Protocol(what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn flight_locks_are_removed_when_the_last_holder_leaves() {
        let locks = FlightLocks::default();
        {
            let _first = Flight::board(&locks, "1").await;
            assert_eq!(locks.len(), 1);
        }
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test]
    async fn a_waiting_flight_keeps_the_lock_and_then_cleans_up() {
        let locks = Arc::new(FlightLocks::default());
        let first = Flight::board(&locks, "7").await;
        let waiter = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move {
                let _second = Flight::board(&locks, "7").await;
            })
        };
        // Let the waiter queue up behind the first flight.
        while Arc::strong_count(locks.get("7").unwrap().value()) < 3 {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert_eq!(locks.len(), 1, "the waiter still holds the lock");
        waiter.await.unwrap();
        assert_eq!(locks.len(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_no_lock_behind_after_the_holder_leaves() {
        let locks = FlightLocks::default();
        let first = Flight::board(&locks, "9").await;
        let cancelled =
            tokio::time::timeout(Duration::from_millis(1), Flight::board(&locks, "9")).await;
        assert!(cancelled.is_err());
        drop(first);
        assert_eq!(locks.len(), 0);
    }

    #[test]
    fn access_token_debug_redacts() {
        let token = AccessToken {
            token_id: "1".to_owned(),
            access_token: "1000.very-secret".to_owned(),
            api_domain: Url::parse("https://www.zohoapis.com").unwrap(),
        };
        assert!(!format!("{token:?}").contains("very-secret"));
    }
}
