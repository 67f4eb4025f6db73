//! Refreshing an access token before it expires: one flight per token, the result written with
//! compare-and-set, and the leeway kept sensible for short-lived tokens.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::flight::{Flight, LoggedFailure, SharedFailure};
use super::{AccessToken, TokenError, TokenManager, TokenOwner};
use crate::secret::random_token;
use crate::tokens::{OAuthToken, Secret, now_millis};
use crate::zoho::limits::BUSY_RETRY_AFTER;
use crate::zoho::{AccountsError, TokenResponse};

/// Whose turn it is to refresh, across processes.
enum Turn {
    /// This attempt holds the lease; `stored` is the token as read under it.
    Ours { holder: String, stored: OAuthToken },
    /// Another process refreshed while this one waited: its token.
    RefreshedElsewhere(AccessToken),
}

impl TokenManager {
    /// The refresh path, one flight per token id. `seen` is the access token the caller found wanting: about
    /// to expire, or (when `rejected`) just refused by CRM.
    ///
    /// Waiters use the result of the flight they waited for: a token written meanwhile (by that flight, another
    /// process or a login) is used as long as it has not expired, even inside the leeway, so that an access
    /// lifetime shorter than the leeway cannot turn a burst of requests into a burst of refreshes; and a
    /// failure of that flight (throttled, timeout, …) is answered to them too, rather than tried again by each.
    ///
    /// Waiting (for this process's flight, or for another process's lease) is bounded by the queue timeout
    /// (`--crm-queue-timeout-ms`), as a turn at the CRM gate is: past it the page is told Zoho is busy
    /// ([`TokenError::Busy`]) rather than held until a dead holder's lease lapses.
    pub(super) async fn refresh(
        &self,
        owner: &TokenOwner,
        seen: Option<&Secret>,
        rejected: bool,
    ) -> Result<AccessToken, TokenError> {
        let token_id = owner.token_id.as_str();
        let boarded = Instant::now();
        let deadline = tokio::time::Instant::now() + self.gate.queue_timeout();
        let Ok(mut flight) =
            tokio::time::timeout_at(deadline, Flight::board(&self.flights, token_id)).await
        else {
            tracing::warn!(
                "the refresh this request waited for did not end within the queue timeout"
            );
            return Err(busy());
        };
        // Re-read after waiting: whoever held the flight (or another process) may have refreshed already.
        let stored = self.read(owner).await?;
        let changed = stored.access_token.as_ref() != seen;
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
        // The flight above is this process's; the lease is every process's that shares the store.
        let waited_on = stored.access_token.clone();
        let lease = self
            .take_refresh_lease(owner, stored, rejected, deadline)
            .await;
        if let (Err(error), Some(log)) = (&lease, flight.log()) {
            // Those waiting behind this flight would wait on the same lease: they are answered the same.
            log.last_failure = SharedFailure::of(error).map(|failure| LoggedFailure {
                at: Instant::now(),
                access_token: waited_on,
                failure,
            });
        }
        let (holder, stored) = match lease? {
            Turn::Ours { holder, stored } => (holder, stored),
            Turn::RefreshedElsewhere(token) => return Ok(token),
        };
        let attempted = stored.access_token.clone();
        let result = self.refresh_stored(owner, stored).await;
        self.release_refresh_lease(token_id, holder).await;
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

    /// Waits for this token's refresh lease across every process sharing the store. While another process holds
    /// it, the store is read again (backing off from 20 ms to 250 ms) until that process's new token is there,
    /// or the row is gone (the holder found the refresh token dead: [`TokenError::NotStored`], and the person
    /// logs in again); Zoho is never called meanwhile. A lease whose holder died lapses after its lifetime (and
    /// is then taken over), but this waits only until `deadline`: then [`TokenError::Busy`].
    async fn take_refresh_lease(
        &self,
        owner: &TokenOwner,
        mut stored: OAuthToken,
        rejected: bool,
        deadline: tokio::time::Instant,
    ) -> Result<Turn, TokenError> {
        let holder = format!("{}:{}", std::process::id(), random_token());
        let seen = stored.access_token.clone();
        let mut waited = false;
        let mut backoff = Duration::from_millis(20);
        loop {
            let (id, candidate, ttl) = (owner.token_id.clone(), holder.clone(), self.lease_ttl);
            let acquired = self
                .with_store(move |store| store.try_acquire_refresh_lease(&id, &candidate, ttl))
                .await?;
            if acquired {
                if waited {
                    // The lease lapsed or was given back: whoever held it may have refreshed after all.
                    stored = self.read(owner).await?;
                    let changed = stored.access_token != seen;
                    if (changed && unexpired(&stored)) || (!rejected && self.is_fresh(&stored)) {
                        self.release_refresh_lease(&owner.token_id, holder).await;
                        return self
                            .access_token_from(&owner.token_id, &stored)
                            .map(Turn::RefreshedElsewhere);
                    }
                }
                return Ok(Turn::Ours { holder, stored });
            }
            if !waited {
                tracing::debug!("another process is refreshing this token; waiting for its result");
                waited = true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                tracing::warn!(
                    "another process's refresh lease on this token outlasted the queue timeout; answering busy"
                );
                return Err(busy());
            }
            tokio::time::sleep(backoff.min(deadline - now)).await;
            backoff = (backoff * 2).min(Duration::from_millis(250));
            let now = self.read(owner).await?;
            if now.access_token != seen && unexpired(&now) {
                tracing::debug!("another process refreshed the token; using it");
                return self
                    .access_token_from(&owner.token_id, &now)
                    .map(Turn::RefreshedElsewhere);
            }
        }
    }

    /// Gives the lease back; a failure only logs (the lease lapses by itself).
    async fn release_refresh_lease(&self, token_id: &str, holder: String) {
        let id = token_id.to_owned();
        let released = self
            .with_store(move |store| store.release_refresh_lease(&id, &holder))
            .await;
        if let Err(error) = released {
            tracing::warn!(%error, "could not give back the refresh lease; it lapses by itself");
        }
    }

    /// Refreshes `stored` at its data centre and writes the result with compare-and-set.
    async fn refresh_stored(
        &self,
        owner: &TokenOwner,
        stored: OAuthToken,
    ) -> Result<AccessToken, TokenError> {
        let token_id = owner.token_id.as_str();
        let Some(refresh_token) = stored.refresh_token.as_ref().filter(|t| !t.is_empty()) else {
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
            Ok(response) => {
                let expiry = self.granted(response.expires_in);
                let (id, expected, fresh) =
                    (token_id.to_owned(), seen, response.access_token.clone());
                let won = self
                    .with_store(move |store| {
                        store.compare_and_set_access_token(
                            &id,
                            expected.as_ref().map(Secret::expose_secret),
                            fresh.expose_secret(),
                            expiry,
                        )
                    })
                    .await?;
                if won {
                    tracing::info!("access token refreshed");
                    return Ok(AccessToken {
                        token_id: token_id.to_owned(),
                        access_token: response.access_token,
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
                        store.delete_token_if_unchanged(
                            &id,
                            expected.as_ref().map(Secret::expose_secret),
                        )
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
    pub(super) fn granted(&self, lifetime: Duration) -> i64 {
        self.note_lifetime(lifetime);
        expiry_after(lifetime)
    }

    /// Whether the stored access token has at least the leeway left (an unknown expiry is not fresh).
    pub(super) fn is_fresh(&self, token: &OAuthToken) -> bool {
        let has_access = token.access_token.as_ref().is_some_and(|t| !t.is_empty());
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
    pub(super) fn effective_leeway_ms(&self) -> i64 {
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
}

/// The answer to a page that waited for a refresh past the queue timeout: the "Zoho is busy" page.
fn busy() -> TokenError {
    TokenError::Busy {
        retry_after: BUSY_RETRY_AFTER,
    }
}

/// Whether the stored access token has not expired yet (leeway aside).
fn unexpired(token: &OAuthToken) -> bool {
    let has_access = token.access_token.as_ref().is_some_and(|t| !t.is_empty());
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
fn refresh_outcome(answer: &Result<TokenResponse, AccountsError>) -> &'static str {
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
pub(super) fn accounts_failure(during: &'static str, error: AccountsError) -> TokenError {
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
